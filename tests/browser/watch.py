"""What every browser test checks of a page: it reached no other host, threw no script
error, broke no Content-Security-Policy rule, logged no console error and got no failed
response (4xx/5xx), except those a test expects.

The `page` fixture (conftest.py) records outside requests and script errors; the `watched`
fixture adds the rest with `watch`.
"""

from __future__ import annotations

WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
    (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


def watch(page):
    """The page, also recording CSP violations, console errors, failed responses and the
    scripts it fetched."""
    page.add_init_script(WATCH_CSP)
    page.console_errors, page.failed, page.scripts = [], [], []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.on(
        "response", lambda r: page.failed.append((r.status, r.url)) if r.status >= 400 else None
    )
    page.on(
        "request", lambda r: page.scripts.append(r.url) if r.resource_type == "script" else None
    )
    return page


def assert_clean(
    page, *, expected_statuses: tuple[int, ...] = (), allowed_violations: tuple[str, ...] = ()
) -> None:
    """Nothing went wrong on the page but the failed responses of `expected_statuses` (and
    Chromium's console line for each) and the CSP violations `allowed_violations`
    ("directive blocked-uri"). A page without `watch` is checked for what it recorded."""
    assert page.outside_requests == [], "pages must not reach other hosts"
    assert page.js_errors == [], f"script errors on {page.url}: {page.js_errors}"
    if not hasattr(page, "console_errors"):
        return
    violations = [v for v in page.evaluate("window.__csp") if v not in allowed_violations]
    assert violations == [], f"CSP violations on {page.url}: {violations}"
    allowed = [f"status of {code}" for code in expected_statuses]
    allowed += [violation.split()[1] for violation in allowed_violations]
    errors = [e for e in page.console_errors if not any(a in e for a in allowed)]
    assert errors == [], f"console errors on {page.url}: {errors}"
    failed = [f for f in page.failed if f[0] not in expected_statuses]
    assert failed == [], f"failed responses on {page.url}: {failed}"
