"""Stateful fuzzing: sequences of create, edit, list, export, cancel, requeue, archive and
delete over a populated store, with hostile text everywhere (issue 19, item 7).

A Hypothesis state machine keeps a model of the runs it created and edited (their names,
tags and notes as the API answered them, whether they were deleted) and checks after every
step that what the API reads back agrees: a run edited keeps its edit, a run deleted is a
404, and every answer (lists, table, CSV exports, the report) passes the same checks as the
schema fuzz (tests/api/fuzzing.py `problems`): no 5xx, declared status and schema, UTF-8.
STACKLAB_FUZZ_STEPS (default 25) steps a sequence, STACKLAB_FUZZ_SEQUENCES (default 20).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

from tests.api import fuzzing

STEPS = int(os.environ.get("STACKLAB_FUZZ_STEPS", "25"))
SEQUENCES = int(os.environ.get("STACKLAB_FUZZ_SEQUENCES", "20"))
KINDS = ["pretrain", "tune", "finetune"]
SMALL = {
    "pretrain": {"ae01": {"epochs": 1}, "ae02": {"epochs": 1}, "ae03": {"epochs": 1}},
    "tune": {"n_trials": 1, "epochs": 1},
    "finetune": {"epochs": 1},
}


@pytest.fixture(scope="module")
def populated(client, app_env):
    backend = "postgres" if "DATABASE_URL" in app_env else "sqlite"
    store = fuzzing.populate(backend)
    return store, client.app.openapi()


def test_sequences_of_edits_exports_and_deletes_keep_the_api_whole(populated, client):
    store, document = populated
    pretrain = store.runs[("pretrain", "succeeded")]
    # what a person might type (any letter, digit, mark or space: stored, then exported)
    typed = st.text(
        st.characters(categories=["L", "M", "N", "Zs", "P", "S"]), min_size=1, max_size=30
    )
    texts = st.one_of(typed, fuzzing.hostile_text(24))
    in_url = fuzzing.hostile_text(24, sizes=fuzzing.URL_SIZES)  # a URL holds 64 KB at most
    seen: Counter[tuple[str, str, int]] = Counter()  # (method, path, status) over all runs
    tag_lists = st.lists(st.one_of(st.sampled_from(store.tags), typed, texts), max_size=4)

    class Runs(RuleBasedStateMachine):
        """The model: run id -> what the API last said its labels are (None: deleted)."""

        stored = Bundle("stored")  # the populated runs: every kind in every status
        created = Bundle("created")  # runs these sequences launched (deleted ones stay in it)
        any_run = st.one_of(stored, created)

        def __init__(self):
            super().__init__()
            self.model: dict[int, dict | None] = {}
            self.touched: set[int] = set()  # runs the last step acted on

        def call(self, method: str, path: str, url: str, **kwargs):
            response = client.request(method, url, **kwargs)
            operation = document["paths"][path][method.lower()]
            seen[(method, path, response.status_code)] += 1
            found = fuzzing.problems(document, operation, response)
            assert not found, f"{method} {fuzzing.shown(url)} {fuzzing.shown(kwargs)}\n  " + (
                "\n  ".join(found)
            )
            return response

        def send_json(self, method: str, path: str, url: str, body) -> object:
            data = fuzzing.Call(method, path, {}, {}, body).content()
            return self.call(method, path, url, content=data, headers=JSON)

        @initialize(target=stored)
        def the_stored_runs(self):
            """The model holds a run once a rule has changed it."""
            return multiple(*store.run_ids)

        @initialize(target=created)
        def one_created_run(self):
            return self.create("pretrain", None, [], store.datasets[0])

        def read(self, run_id: int) -> dict | None:
            response = self.call("GET", "/api/runs/{run_id}", f"/api/runs/{run_id}")
            if response.status_code == 404:
                return None
            run = response.json()
            return {"name": run["name"], "tags": run["tags"]}

        @rule(
            target=created,
            kind=st.sampled_from(KINDS),
            name=st.one_of(st.none(), texts),
            tags=tag_lists,
            dataset=st.sampled_from(store.datasets),
        )
        def create(self, kind, name, tags, dataset):
            body = {"kind": kind, "dataset": dataset, "tags": tags, "params": SMALL[kind]}
            if name is not None:
                body["name"] = name
            if kind == "finetune":
                body["parent_run_id"] = pretrain
            response = self.send_json("POST", "/api/runs", "/api/runs", body)
            if response.status_code != 201:
                return multiple()
            ids = [run["id"] for run in response.json()]
            for run in response.json():
                self.model[run["id"]] = {"name": run["name"], "tags": run["tags"]}
            self.touched.update(ids)
            return multiple(*ids)

        @rule(
            run_id=any_run,
            name=st.one_of(st.none(), texts),
            tags=st.one_of(st.none(), tag_lists),
            notes=st.one_of(st.none(), texts, fuzzing.long_text()),
            leave_out=st.sets(st.sampled_from(["name", "tags", "notes"])),
        )
        def edit(self, run_id, name, tags, notes, leave_out):
            self.touched.add(run_id)
            body = {"name": name, "tags": tags, "notes": notes}
            body = {k: v for k, v in body.items() if k not in leave_out}
            url = f"/api/runs/{run_id}"
            response = self.send_json("PATCH", "/api/runs/{run_id}", url, body)
            if response.status_code == 200:
                run = response.json()
                self.model[run_id] = {"name": run["name"], "tags": run["tags"]}
            elif run_id in self.model and self.model[run_id] is None:  # deleted
                assert response.status_code in (404, 413, 422), response.text  # never 200

        @rule(run_id=any_run, name=st.sampled_from(["renamed", "ré-nommé", "名前 2"]))
        def rename(self, run_id, name):
            """A PATCH the rules accept, so sequences reach edited runs whatever the fuzz
            draws for `edit` (whose hostile fields are mostly refused)."""
            self.edit(run_id, name, None, None, {"tags", "notes"})

        @rule(run_id=any_run, action=st.sampled_from(["cancel", "requeue"]))
        def act(self, run_id, action):
            self.touched.add(run_id)
            path = f"/api/runs/{{run_id}}/{action}"
            self.call("POST", path, f"/api/runs/{run_id}/{action}")

        @rule(
            run_ids=st.lists(any_run, min_size=1, max_size=3, unique=True),
            action=st.sampled_from(["tag", "untag", "archive", "unarchive", "cancel"]),
            tag=st.one_of(st.none(), texts, st.sampled_from(store.tags)),
        )
        def bulk(self, run_ids, action, tag):
            self.touched.update(run_ids)
            body = {"action": action, "ids": run_ids, "tag": tag}
            response = self.send_json("POST", "/api/runs/bulk", "/api/runs/bulk", body)
            if response.status_code == 200 and action in ("tag", "untag"):
                for run_id in run_ids:
                    if self.model.get(run_id, {}) is not None:  # not deleted
                        self.model[run_id] = self.read(run_id)

        @rule(run_id=created)
        def delete(self, run_id):
            self.touched.add(run_id)
            # a queued run is not deleted (its worker may hold it): cancel it first
            self.call("POST", "/api/runs/{run_id}/cancel", f"/api/runs/{run_id}/cancel")
            body = {"action": "delete", "ids": [run_id]}
            response = self.send_json("POST", "/api/runs/bulk", "/api/runs/bulk", body)
            if response.status_code == 200:
                self.model[run_id] = self.read(run_id)  # deleted: None; refused: still there
                seen[("deleted", "", int(self.model[run_id] is None))] += 1

        @rule(
            q=st.one_of(st.none(), in_url),
            tag=st.one_of(st.none(), in_url, st.sampled_from(store.tags)),
            archived=st.sampled_from(["hide", "include", "only"]),
        )
        def list_runs(self, q, tag, archived):
            query = {"q": q, "tag": tag, "archived": archived}
            call = fuzzing.Call("GET", "/api/runs", {}, {k: v for k, v in query.items() if v})
            self.call("GET", "/api/runs", call.url)
            call.template = "/api/runs/table"
            self.call("GET", "/api/runs/table", call.url)

        @rule(run_id=any_run, export=st.sampled_from(["metrics.csv", "metrics.json", "report"]))
        def export(self, run_id, export):
            if export == "report":  # the pretrain's: its tunes, finetunes and studies
                for report_id in (run_id, pretrain):
                    url = f"/api/experiments/{report_id}"
                    self.call("GET", "/api/experiments/{run_id}", url)
            else:
                path = "/api/runs/{run_id}/" + export
                self.call("GET", path, path.replace("{run_id}", str(run_id)))

        @rule(archived=st.sampled_from(["hide", "include", "only"]))
        def table_csv(self, archived):
            url = f"/api/runs/table.csv?archived={archived}&limit=500"
            response = self.call("GET", "/api/runs/table.csv", url)
            assert response.status_code == 200, response.text

        @invariant()
        def reads_agree_with_the_model(self):
            """The runs the last step acted on, after each step; all of them at the end."""
            for run_id in sorted(self.touched & set(self.model)):
                assert self.read(run_id) == self.model[run_id], run_id
            self.touched.clear()

        def teardown(self):
            for run_id, expected in self.model.items():
                assert self.read(run_id) == expected, run_id

    Runs.TestCase.settings = settings(
        max_examples=SEQUENCES,
        stateful_step_count=STEPS,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )
    Runs.TestCase().runTest()
    print(sorted(seen.items()))
    # the sequences went past the refusals: runs were created, edited and deleted
    assert seen[("POST", "/api/runs", 201)] and seen[("PATCH", "/api/runs/{run_id}", 200)]
    assert seen[("POST", "/api/runs/bulk", 200)] and seen[("deleted", "", 1)], sorted(seen.items())


JSON = {"content-type": "application/json"}
