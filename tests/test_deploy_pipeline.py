"""The deploy pipeline through `llmflow run`, on the local platform: real vLLM, nginx, Prometheus.

One platform serves a sequence of releases of the tiny model, as a team's cluster would:

1. the base model, the first release: deployed directly as stable;
2. the fine-tuned model: shadowed (live traffic mirrored to it), then a canary through every
   stage, promoted;
3. the base model again: worse answers, rolled back on quality;
4. a good canary while Prometheus cannot be reached: rolled back, the reason in the report;
5. weights vLLM cannot load: the canary never becomes ready, rolled back before any traffic
   moved;
6. a good canary whose run is interrupted mid-analysis: stable serves everything afterwards.

A background client sends requests through the gateway the whole time, and users (streamed,
three in flight) while the shadow is open, as the demo has them; none may fail. Only the
second release has a shadow stage (`serving.shadow` of releases/tiny.yaml); the others go
straight to the canary, which is what they test. A candidate that fails its shadow (slow under
the mirrored load) is the demo's second release (tests/test_demo.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.probe_sets import load_probe_set
from serving.traffic import ShadowUsers, Traffic
from tests.vllm_server import require_vllm
from workflows.local.platform import LocalPlatform

# The module's fixture runs six releases inside its first test.
pytestmark = [pytest.mark.model, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[1]
LLMFLOW = str(Path(sys.executable).parent / "llmflow")
NAMESPACE = "llmflow"
GATEWAY = f"llmflow-gateway.{NAMESPACE}"
#: A prompt the fine-tuned model answers right and the base model does not.
QUESTION = "Question: What is 3 plus 4?\nAnswer:"


def spec_file(folder: Path, name: str, shadow: bool = False, **serving: Any) -> Path:
    """releases/tiny.yaml with serving settings changed; its shadow stage only if asked."""
    spec = yaml.safe_load((ROOT / "releases" / "tiny.yaml").read_text())
    if not shadow:
        del spec["serving"]["shadow"]
    spec["serving"].update(serving)
    # Two stages keep the suite's time in bounds; the stages themselves are what is tested.
    spec["serving"]["canary"]["stages"] = [50, 100]
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_deploy(root: Path, spec: Path, candidate: Path, *extra: str) -> dict[str, Any]:
    """Run the deploy pipeline to its end; returns the run's status and nodes by name."""
    before = set((root / "runs").glob("*")) if (root / "runs").exists() else set()
    result = subprocess.run(
        [
            *(LLMFLOW, "run", "deploy", "-f", str(spec), "--root", str(root)),
            *("--set", f"candidate=file://{candidate}", *extra),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    [run_dir] = set((root / "runs").glob("*")) - before
    status = json.loads((run_dir / "status.json").read_text())
    nodes = {n["displayName"]: n for n in status["nodes"].values()}
    return {
        "dir": run_dir,
        "status": status,
        "nodes": nodes,
        "rc": result.returncode,
        "stderr": result.stderr[-4000:],
    }


def phase(run: dict[str, Any], task: str) -> str | None:
    node = run["nodes"].get(task)
    return None if node is None else node["phase"]


def outputs(node: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in (node.get("outputs") or {}).get("parameters") or []}


def services(root: Path) -> dict[str, Any]:
    return json.loads((root / "platform" / "services.json").read_text())


def gateway_url(root: Path) -> str:
    return "http://" + services(root)[GATEWAY]["endpoints"][0]


def complete(url: str, prompt: str, max_tokens: int = 4, timeout: float = 60) -> str:
    body = json.dumps(
        {"model": "tiny-llama", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    ).encode()
    request = urllib.request.Request(
        f"{url}/v1/completions", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return str(json.loads(response.read())["choices"][0]["text"])


class BackgroundClient:
    """Users: a request through the gateway every 0.5 s; every failure is kept."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sent = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> BackgroundClient:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            try:
                complete(gateway_url(self.root), "Question: What is 1 plus 2?\nAnswer:")
            except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
                self.failures.append(f"{time.strftime('%X')} {exc}")
            self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)


class FollowRuns:
    """Calls `update` with the newest run's status every 0.3 s, while in a `with` block."""

    def __init__(self, root: Path, update: Any) -> None:
        self.root = root
        self.update = update
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> FollowRuns:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(0.3):
            runs = sorted(
                (self.root / "runs").glob("*/status.json"), key=lambda p: p.stat().st_mtime
            )
            if runs:
                try:
                    self.update(json.loads(runs[-1].read_text()))
                except (OSError, ValueError):
                    continue  # a status being rewritten: read it next time


def platform(root: Path) -> LocalPlatform:
    return LocalPlatform(root, NAMESPACE)


def route_weights(root: Path) -> dict[str, int]:
    route = platform(root).get("HTTPRoute", NAMESPACE, "tiny-llama")
    assert route is not None
    refs = route["spec"]["rules"][0]["backendRefs"]
    return {ref["name"]: ref.get("weight", 1) for ref in refs}


def deployment(root: Path, track: str) -> dict[str, Any] | None:
    return platform(root).get("Deployment", NAMESPACE, f"tiny-llama-{track}")


def broken_model(folder: Path, source: Path) -> Path:
    """Weights vLLM refuses: the tiny model with a config that names no architecture."""
    broken = folder / "broken"
    shutil.copytree(source, broken)
    config = json.loads((broken / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]
    (broken / "config.json").write_text(json.dumps(config))
    return broken


def interrupted_deploy(root: Path, spec: Path, candidate: Path) -> dict[str, Any]:
    """Start a deploy, interrupt it (as `argo stop` would) while a stage is being analysed."""
    before = set((root / "runs").glob("*")) if (root / "runs").exists() else set()
    proc = subprocess.Popen(
        [
            LLMFLOW,
            "run",
            "deploy",
            "-f",
            str(spec),
            "--root",
            str(root),
            "--set",
            f"candidate=file://{candidate}",
        ],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    run_dir = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = set((root / "runs").glob("*")) - before
        if found:
            run_dir = next(iter(found))
            try:
                status = json.loads((run_dir / "status.json").read_text())
            except (OSError, ValueError):
                status = {"nodes": {}}
            running = [
                n
                for n in status["nodes"].values()
                if n["displayName"].startswith("analyse-") and n["phase"] == "Running"
            ]
            if running:
                break
        time.sleep(0.5)
    weights_during = route_weights(root)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert run_dir is not None
    status = json.loads((run_dir / "status.json").read_text())
    return {
        "status": status,
        "rc": proc.returncode,
        "weights_during": weights_during,
        "nodes": {n["displayName"]: n for n in status["nodes"].values()},
        "stderr": stderr,
    }


@pytest.fixture(scope="module")
def releases(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, fine_tuned: Path
) -> Iterator[dict[str, Any]]:
    require_vllm()
    root = tmp_path_factory.mktemp("platform")
    specs = tmp_path_factory.mktemp("specs")
    base_args = yaml.safe_load((ROOT / "releases" / "tiny.yaml").read_text())["serving"][
        "vllm_args"
    ]
    good = spec_file(specs, "good")
    shadowed = spec_file(specs, "shadowed", shadow=True)
    reseeded = spec_file(specs, "reseeded", vllm_args=[*base_args, "--seed", "1"])
    other = spec_file(specs, "other", vllm_args=[*base_args, "--seed", "2"])
    client = BackgroundClient(root)
    out: dict[str, Any] = {"root": root, "client": client}
    try:
        out["first"] = run_deploy(root, good, tiny_model)
        out["first_answer"] = complete(gateway_url(root), QUESTION)
        client.start()
        users = ShadowUsers(
            lambda: Traffic(gateway_url(root), "tiny-llama", load_probe_set("tiny"), concurrency=3)
        )
        out["users"] = users
        with FollowRuns(root, users.update):
            out["promoted"] = run_deploy(root, shadowed, fine_tuned)
            out["promoted_answer"] = complete(gateway_url(root), QUESTION)
            out["after_promotion"] = {
                "weights": route_weights(root),
                "route": platform(root).get("HTTPRoute", NAMESPACE, "tiny-llama"),
                "stable": deployment(root, "stable"),
                "canary": deployment(root, "canary"),
            }
        out["users_saw"] = users.stop()
        out["user_windows"] = users.windows
        out["worse"] = run_deploy(root, good, tiny_model)
        out["blind"] = run_deploy(
            root, reseeded, fine_tuned, "--set", "prometheus-url=http://127.0.0.1:9"
        )
        out["broken"] = run_deploy(root, good, broken_model(specs, tiny_model))
        out["stopped"] = interrupted_deploy(root, other, fine_tuned)
        out["after_all"] = {
            "weights": route_weights(root),
            "stable": deployment(root, "stable"),
            "canary": deployment(root, "canary"),
            "answer": complete(gateway_url(root), QUESTION),
        }
        client.stop()
        yield out
    finally:
        client.stop()
        if "users" in out:
            out["users"].stop()
        stopped = subprocess.run(
            [LLMFLOW, "local", "--root", str(root), "down"], timeout=120, capture_output=True
        )
        assert stopped.returncode == 0, stopped.stderr


def test_the_first_release_is_deployed_directly(releases: dict[str, Any]) -> None:
    first = releases["first"]
    assert first["status"]["phase"] == "Succeeded", first["stderr"]
    assert outputs(first["nodes"]["plan-rollout"])["mode"] == "first"
    assert phase(first, "deploy-first") == "Succeeded"
    assert phase(first, "deploy-canary") == "Skipped"
    assert releases["first_answer"].strip() != "7"  # the base model cannot add


def shadow_report(run: dict[str, Any]) -> dict[str, Any]:
    report = run["dir"] / "artifacts" / run["nodes"]["analyse-shadow"]["id"] / "report"
    data: dict[str, Any] = json.loads((report / "shadow.json").read_text())
    return data


def test_a_good_candidate_passes_its_shadow_then_the_canary_and_is_promoted(
    releases: dict[str, Any],
) -> None:
    run = releases["promoted"]
    assert run["status"]["phase"] == "Succeeded", run["stderr"]
    version = outputs(run["nodes"]["plan-rollout"])["version"]
    assert outputs(run["nodes"]["analyse-shadow"])["verdict"] == "PASS"
    shadow = shadow_report(run)
    assert shadow["verdict"] == "PASS" and shadow["fraction"] == 0.5
    live = shadow["live"]
    # The window closed on the candidate's mirrored requests; stable served every user.
    assert live["candidate"]["requests"] >= 150
    assert live["stable"]["requests"] > live["candidate"]["requests"]
    for name in ("live_error_rate", "live_ttft_p50", "live_e2e_p50"):
        assert live["checks"][name]["verdict"] == "PASS", live["checks"][name]
    assert shadow["quality"]["verdict"] in ("PASS", "SKIPPED")
    # The shadow ran before any traffic moved to the canary.
    started = {n: run["nodes"][n]["startedAt"] for n in ("analyse-shadow", "stage-50")}
    assert started["analyse-shadow"] < started["stage-50"]
    for stage in ("analyse-50", "analyse-100"):
        assert outputs(run["nodes"][stage])["verdict"] == "PASS"
    assert phase(run, "promote") == "Succeeded"
    assert phase(run, "rollback") == "Omitted"
    after = releases["after_promotion"]
    assert after["weights"] == {"tiny-llama-stable": 100}
    assert "filters" not in json.dumps(after["route"]["spec"])  # the mirror is gone
    assert after["canary"] is None
    assert after["stable"]["metadata"]["labels"]["version"] == version
    assert after["stable"]["status"]["readyReplicas"] == 1
    # Through the gateway, the new model answers.
    assert releases["promoted_answer"].strip() == "7"
    # The users, streaming three at a time through the mirror, saw no failure.
    assert releases["user_windows"] == 1
    seen = releases["users_saw"]
    assert seen.ok > 150 and seen.failed == {}


def _rolled_back(run: dict[str, Any], failed_stage: str) -> dict[str, Any]:
    assert run["status"]["phase"] == "Failed", run["stderr"]
    assert run["rc"] != 0
    assert phase(run, failed_stage) == "Failed"
    assert phase(run, "rollback") == "Succeeded"
    assert phase(run, "promote") == "Omitted"
    report = run["dir"] / "artifacts" / run["nodes"][failed_stage]["id"] / "report"
    stage = failed_stage.removeprefix("analyse-")
    data = json.loads((report / f"stage-{stage}.json").read_text())
    assert data["verdict"] != "PASS"
    assert (report / f"stage-{stage}.png").read_bytes().startswith(b"\x89PNG")
    assert data["reason"] in run["status"]["message"] or data["reason"][:60] in str(
        run["nodes"][failed_stage]["message"]
    )
    return data


def test_a_worse_model_is_rolled_back_on_quality(releases: dict[str, Any]) -> None:
    data = _rolled_back(releases["worse"], "analyse-50")
    assert data["verdict"] == "FAIL"
    assert data["probe"]["checks"]["quality"]["verdict"] == "FAIL"


def test_an_unreachable_prometheus_rolls_back_with_the_reason(releases: dict[str, Any]) -> None:
    data = _rolled_back(releases["blind"], "analyse-50")
    assert data["live"]["error"] and "127.0.0.1:9" in data["live"]["error"]
    assert "analysis failed" in data["reason"]


def test_a_canary_that_never_becomes_ready_is_rolled_back_before_traffic_moves(
    releases: dict[str, Any],
) -> None:
    run = releases["broken"]
    assert run["status"]["phase"] == "Failed", run["stderr"]
    assert phase(run, "deploy-canary") == "Failed"
    assert phase(run, "stage-50") == "Omitted"  # no traffic ever moved
    assert phase(run, "rollback") == "Succeeded"


def test_an_interrupted_canary_leaves_stable_serving_everything(releases: dict[str, Any]) -> None:
    stopped = releases["stopped"]
    assert stopped["status"]["phase"] == "Failed"
    assert stopped["weights_during"].get("tiny-llama-canary") == 50
    assert phase({"nodes": stopped["nodes"]}, "restore-route") == "Succeeded"
    after = releases["after_all"]
    assert after["weights"] == {"tiny-llama-stable": 100}
    assert after["canary"] is None
    promoted = outputs(releases["promoted"]["nodes"]["plan-rollout"])["version"]
    assert after["stable"]["metadata"]["labels"]["version"] == promoted
    assert after["answer"].strip() == "7"


def test_users_saw_no_failure_through_every_release(releases: dict[str, Any]) -> None:
    client = releases["client"]
    assert client.sent > 50
    assert client.failures == []
