"""Issue 20, part 3 (no idle slot): the final evaluation's seeds started during the search, on
the slot its last survivor leaves empty (``final_eval.early``), against the same search with
them started after it. The smoke preset, 8 trials, 3 seeds (FinalEval's default), cache warm;
one run each, early first. The test metrics must be the same: a run of (configuration, seed)
gives the same result whenever it starts.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import save, smoke_search, synthetic_data


def _search(name: str, data: Path, storage: Path, cache: Path, early: bool,
            samples: int = 8, seeds: int = 3) -> dict | None:
    _, result, wall, _ = smoke_search(name, data, storage, cache, samples,
                                      [f"final_eval.seeds={seeds}",
                                       f"final_eval.early={str(early).lower()}"])
    if not seeds:
        return None
    final = result.final
    assert final is not None, f"the {name} search has no final evaluation"
    return {"wall_s": round(wall, 1),
            "phases_s": {k: round(v, 1) for k, v in result.timings.items()},
            "winner": final.config, "seeds": final.seeds,
            "test_meta_score": final.metrics["test_meta_score"]["values"]}


def run(tmp: Path, quick: bool = False) -> dict:
    data = synthetic_data(tmp / "data")
    cache, storage = tmp / "cache", tmp / "storage"
    _search("warm-up", data, storage, cache, early=False, samples=1, seeds=0)  # the cache
    early = _search("early", data, storage, cache, early=True)
    after = _search("after", data, storage, cache, early=False)
    same = early["winner"] == after["winner"]
    return save("early_final_eval", {
        "search": "smoke preset, 8 trials, final_eval.seeds=3, cache warm",
        "early": early, "after": after,
        "same_winner": same,
        "same_test_metrics": same and early["test_meta_score"] == after["test_meta_score"],
        "final_eval_ratio": round(after["phases_s"]["final_eval"]
                                  / early["phases_s"]["final_eval"], 2),
        "whole_command_ratio": round(after["wall_s"] / early["wall_s"], 2),
        "goal": "shorter with the same test metrics (part 3: no idle slot)"})
