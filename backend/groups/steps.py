"""The step a study's verdict names, offered on its page: more seeds while the answer is
open, the runs compared and the experiment's report once it is one, a longer study when
both arms are at chance."""

from __future__ import annotations

from jobspec.verdicts import Verdict
from store.runs import ablations as ablation_launcher
from store.runs.models import Run, RunGroup
from store.runs.seeds import MIN_SEEDS
from store.settings import get_settings

ADD_SEEDS = "add_seeds"
WAIT = "wait"
COMPARE = "compare"
NEW_STUDY = "new_study"


def add_seeds_offer(*, group: RunGroup, runs: list[Run], diff: dict) -> dict:
    """Whether the study takes more seeds, how many at most in one click (its room under
    STACKLAB_MAX_SEEDS, two runs a seed under STACKLAB_MAX_RUNS_PER_REQUEST), and the count
    the verdict suggests (the seeds it needs less those planned; at least 1, capped)."""
    settings = get_settings()
    planned = ablation_launcher.study_seeds(group, runs)
    room = min(
        ablation_launcher.seeds_room(settings, group, runs), settings.max_runs_per_request // 2
    )
    why = ablation_launcher.cannot_add_seeds(group, runs)
    if why is None and room == 0:
        why = (
            f"the study has {len(planned)} seeds, the most it may have (STACKLAB_MAX_SEEDS = "
            f"{settings.max_seeds})"
        )
    needed = diff.get("seeds_needed")
    if diff["outcome"] == Verdict.TOO_FEW:
        wanted = MIN_SEEDS - diff["n"]  # pairs short of an interval
    else:
        wanted = room if needed is None else needed - len(planned)
    suggested = max(1, min(wanted, room))
    return {
        "allowed": why is None,
        "why": why,
        "suggested": suggested,
        "max": room,
        "first_seed": ablation_launcher.next_seeds(group, runs, 1)[0],
        "needed": needed,
        "setting": "STACKLAB_MAX_SEEDS",
        "url": f"/api/groups/{group.id}/seeds",
    }


def next_step(*, group: RunGroup, runs: list[Run], diff: dict, outcome: str) -> dict:
    """What to do after this verdict: the action it names (`primary`), in words, with the
    links and the add-seeds offer the page shows."""
    offer = add_seeds_offer(group=group, runs=runs, diff=diff)
    active = sum(run.status.is_active for run in runs)
    links = _links(group, runs)
    if outcome == Verdict.CHANCE:
        primary = NEW_STUDY
        text = (
            "Both arms learnt next to nothing, so more seeds would not help: launch the study "
            "again with longer training (more epochs, more images), or open a run to see "
            "its curves."
        )
    elif outcome == Verdict.TOO_FEW and active:
        primary = WAIT
        text = (
            f"{active} run{'' if active == 1 else 's'} still queued or training: the verdict "
            "is recomputed as each seed finishes."
        )
    elif outcome in Verdict.open():
        primary = ADD_SEEDS
        text = _more_seeds(offer, diff, active)
    else:
        primary = COMPARE
        text = (
            "The answer is in: compare the runs side by side, read the experiment's report, "
            "or try the factor in another setting with a new study."
        )
    for link in links:
        link["primary"] = link["action"] == primary
    offer["primary"] = primary == ADD_SEEDS
    return {"primary": primary, "text": text, "links": links, "add_seeds": offer}


def _more_seeds(offer: dict, diff: dict, active: int) -> str:
    if diff["outcome"] == Verdict.TOO_FEW and diff.get("no_spread"):
        head = "Every seed gave the same difference: add seeds to measure their spread."
    elif diff["outcome"] == Verdict.TOO_FEW:
        head = "Fewer than 2 seeds finished both arms: add seeds to get an interval."
    elif offer["needed"] is None:
        head = (
            f"Even {diff['seeds_cap']} seeds would not resolve an effect this small; more seeds "
            "narrow the interval, but consider whether the effect matters."
        )
    else:
        head = f"About {offer['needed']} seeds would detect the effect{_rough(diff)}: add seeds."
    if active:
        head += f" ({active} run{'' if active == 1 else 's'} still queued or training.)"
    if not offer["allowed"]:
        head += f" This study cannot take more: {offer['why']}."
    return head


def _rough(diff: dict) -> str:
    """The seed count's range over the sd's uncertainty, as the rough guide it is."""
    spread = diff.get("seeds_range")
    if not spread:
        return ""
    most = "more than " + str(diff["seeds_cap"]) if spread["most"] is None else spread["most"]
    return f" (a rough guide: {spread['fewest']} to {most}, as uncertain as the sd)"


def _links(group: RunGroup, runs: list[Run]) -> list[dict]:
    params = group.params or {}
    parent = params.get("parent_run_id")
    out = []
    if len(runs) >= 2:
        ids = ",".join(str(run.id) for run in runs)
        out.append({"action": COMPARE, "label": "Compare all runs", "href": f"/compare?ids={ids}"})
    if parent is not None:
        out.append(
            {
                "action": "report",
                "label": "Experiment report",
                "href": f"/experiments/{parent}",
            }
        )
    new = "/runs/new?kind=ablation" + (f"&parent={parent}" if parent is not None else "")
    out.append({"action": NEW_STUDY, "label": "New study", "href": new})
    return out
