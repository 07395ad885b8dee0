"""benchmarks/BENCHMARKS.md from benchmarks/results/*.json: one table of ratios against their
baselines and goals, the machine they were measured on, and two plots."""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchmarks import common

DOC = Path(__file__).parent / "BENCHMARKS.md"


def _load() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(common.OUT.glob("*.json"))}


def rows(r: dict[str, dict]) -> list[tuple[str, str, str, str]]:
    """(measure, result, baseline / goal, measured when)."""
    out = []
    if e := r.get("search_efficiency"):
        for kind, goal in (("cold", "≥ 0.80"), ("warm", "≥ 0.85"), ("long", "≥ 0.90")):
            if not (x := e.get(kind)):
                continue
            what = (f"a longer search ({x['search']})" if kind == "long"
                    else f"{kind} cache ({e['search']})")
            out.append((f"Search efficiency, {what}",
                        f"{x['efficiency_whole_command']:.2f} of slot-time trains/evaluates"
                        + (f" (the trials alone {x['efficiency_trials_only']:.2f}; "
                           if "efficiency_trials_only" in x else " (")
                        + f"{x['efficiency_search_only']:.2f} within the Tune search); "
                        f"{x['wall_s']:.0f} s wall"
                        + (f"; at most {x['ceiling_without_idle']:.2f} with no idle slot but each "
                           f"slot's process start ({x['process_start_cpu_s']:.1f} CPU-s)"
                           if "ceiling_without_idle" in x else ""),
                        goal, x.get("measured_when", e["when"])))
        out.append(("Second search rebuilds shared work", "no" if e["second_search_builds_nothing"]
                    else f"yes: {e['warm']['cache_items_built']} items", "nothing rebuilt",
                    e["when"]))
    if f := r.get("early_final_eval"):
        a, b = f["early"], f["after"]
        out.append((f"Final evaluation started on the search's idle slot ({f['search']}), "
                    "vs started after the search",
                    f"whole command {a['wall_s']:.0f} s vs {b['wall_s']:.0f} s "
                    f"({f['whole_command_ratio']:.2f}×); final evaluation "
                    f"{a['phases_s']['final_eval']:.0f} s vs {b['phases_s']['final_eval']:.0f} s; "
                    "test metrics " + ("the same" if f["same_test_metrics"] else
                                       "the same winner, different metrics" if f["same_winner"]
                                       else "not compared: the searches chose other winners"),
                    "shorter, the same test metrics", f["when"]))
    if o := r.get("overhead"):
        out.append((f"Per-trial overhead vs raw Ray Tune ({o['trials']} trivial trials, ASHA, "
                    "reused actors)",
                    f"{o['overhead_s_per_trial']:+.3f} s/trial ({o['metatune_s_per_trial']:.3f} vs "
                    f"{o['raw_tune_s_per_trial']:.3f})", "≤ +0.3 s/trial", o["when"]))
    if t := r.get("throughput"):
        for model in ("cnn", "minilm"):
            x = t.get(model, {})
            if "ratio" in x:
                out.append((f"Training throughput, {model}, 1 thread",
                            f"{x['ratio']:.2f}× a plain PyTorch loop "
                            f"({x['samples_per_s_metatune']:.0f} vs "
                            f"{x['samples_per_s_plain_pytorch']:.0f} samples/s)", "≥ 0.9×",
                            t["when"]))
        for key, what in (("step_tries", "CNN training step on 1 thread, tried against eager "
                                         "NCHW"),
                          ("step_tries_minilm", "minilm training step (every block trained) on "
                                                "1 thread, tried against eager")):
            if tries := t.get(key):
                names = [k for k, v in tries.items() if isinstance(v, dict)]
                out.append((f"{what} (batch {tries['batch_size']}; kept: ≥ 1.15× with the "
                            "same loss)",
                            "; ".join(f"{k} {tries[k]['ratio']:.2f}×"
                                      + ("" if tries[k]["same_curve"] else " (loss differs)")
                                      + (" kept" if tries[k]["kept"] and k != "eager" else "")
                                      for k in names if k != "eager"),
                            "≥ 1.15× to keep", t["when"]))
        goals = {"unfreeze_0.0": "≥ 5×", "unfreeze_0.333": "≥ 1.6×", "unfreeze_1.0": "≈ 1×"}
        for key, f in (t.get("frozen_features") or {}).items():
            if isinstance(f, dict) and "ratio" in f:
                out.append((f"Frozen features cached, minilm, {key.replace('_', ' ')} "
                            f"({f['frozen_blocks']} of 7 blocks frozen), 1 thread",
                            f"{f['ratio']:.2f}× the plain loop ({f['samples_per_s_metatune']:.0f} "
                            f"vs {f['samples_per_s_plain_pytorch']:.0f} samples/s)",
                            goals.get(key, "—"), t["when"]))
        if c := t.get("minilm_checkpoint_mib_per_unit"):
            out.append(("Checkpoint size per trial-unit, minilm (unfreeze_frac 0 / 0.5 / 1)",
                        " / ".join(f"{v} MiB" for v in c.values()), "—", t["when"]))
    for name in sorted(k for k in r if k.startswith("asha_vs_full")):
        a = r[name]
        out.append((f"ASHA vs full budget ({a['trials']} trials, max_t {a['max_t']}, grace "
                    f"{a['grace_period']}, rf 3, {len(a['per_seed'])} seeds)",
                    f"{a['mean_best_ratio']:.3f} of the full search's best at "
                    f"{a['mean_compute_ratio']:.2f} of its compute (per seed: "
                    + ", ".join(f"{x['best_ratio']} at {x['compute_ratio']}"
                                for x in a["per_seed"]) + ")", "≥ 0.97 at ≤ 0.33", a["when"]))
    if w := r.get("warm_start"):
        reached = [s for s in w["per_seed"] if s["warm_units_to_target"]]
        ratios = ", ".join(f"{s['speedup']}×" if s["speedup"] else "not reached"
                           for s in w["per_seed"])
        out.append(("Warm start vs cold (units to 95 % of the best cold meta-score, "
                    f"{len(w['per_seed'])} seeds)",
                    f"warm reached the target on {len(reached)} of {len(w['per_seed'])} seeds; "
                    f"cold ÷ warm units per seed: {ratios}",
                    "≥ 2× (literature 1.2–2.6×)", w["when"]))
    if m := r.get("simulated"):
        asha = {t["setting"]: t for t in m["asha"]}
        chosen = asha.get(m["chosen"]) if m.get("chosen") else None
        base = asha.get("one unit each, keep the top k")
        if chosen:
            out.append((f"ASHA vs full budget, simulated ({m['replays']} replays × 2 recorded "
                        "searches of 27 trials × 27 units; best setting at ≤ ⅓ compute)",
                        f"{m['chosen']}: {chosen['best_fraction']:.3f} of the full search's best "
                        f"at {chosen['compute_fraction']:.2f} of its compute"
                        + (f"; one unit each, then the top k: {base['best_fraction']:.3f} at "
                           f"{base['compute_fraction']:.2f}" if base else ""),
                        "≥ 0.97 at ≤ 0.33", m["when"]))
        for w in m["warm_start"]:
            asha = (m["chosen"] if w["asha"] == "chosen" else
                    f"presets' grace {w['grace_period']}, rf {w['reduction_factor']}")
            out.append((f"Warm start, simulated: {w['target']} from {w['source']}, "
                        f"{w['method']} ({m['replays']} replays, {asha})",
                        f"{w['ratio_of_medians']}× fewer units to 95 % of the best cold "
                        f"meta-score (median {w['cold_median_units']:.0f} cold vs "
                        f"{w['warm_median_units']:.0f} warm; warm never reached it in "
                        f"{w['warm_never_reached']} of {w['pairs']})", "≥ 2×", m["when"]))
        out.append((f"Meta-score aggregate, simulated ({m['chosen']}; the winner scored on the "
                    "mean)", ", ".join(f"{k} {v['best_fraction']:.3f}"
                                      + (f" at {v['compute_fraction']:.2f}"
                                         if "compute_fraction" in v else "")
                                      for k, v in m["aggregate"].items())
                    + " of the full search's best (at that share of its compute)",
                    "rank weighs tasks alike", m["when"]))
    if c := r.get("simulated_confirm"):
        a = c["asha_on_a"]
        x = a.get("against_the_recording", {})
        out.append((f"Real run confirming the simulation: ASHA on A ({a['setting']})",
                    f"{a['best_fraction']:.3f} of the full best at {a['compute_fraction']:.2f} "
                    f"compute (simulated: mean {a['simulated']['best_fraction']:.3f}, 95 % of "
                    f"replays in {a['simulated']['best_interval_95']}, at "
                    f"{a['simulated']['compute_fraction']:.2f}); its curves equal the "
                    f"recording's (max difference {x.get('max_curve_difference')}); the "
                    f"recording replayed in its order stops {x.get('replayed_stops_same')} of "
                    f"{x.get('trials')} trials where it did", "agrees with the simulation",
                    c["when"]))
        for key in ("warm_start_b_from_a", "warm_start_b_from_a_presets"):
            if w := c.get(key):
                out.append((f"Real runs confirming the simulation: warm start B from A, top_k "
                            f"(grace {w['grace_period']}, rf {w['reduction_factor']})",
                            (f"{w['speedup']}× (cold {w['cold_units_to_target']} vs warm "
                             f"{w['warm_units_to_target']} units to 95 % of the cold best)"
                             if w["speedup"] else
                             f"the warm run never reached 95 % of the cold best ({w['warm_best']}"
                             f" against {w['cold_best']}; cold reached it in "
                             f"{w['cold_units_to_target']} units)")
                            + f"; simulated median {w['simulated_speedup']}×",
                            "agrees with the simulation", c["when"]))
    if k := r.get("checkpoints"):
        for name, x in k["presets"].items():
            out.append((f"Checkpoint bytes per trial, {name} preset ({x['checkpoint_mib']} MiB "
                        f"per checkpoint, {'measured' if x['measured'] else 'by arithmetic'}; "
                        f"checkpoints at units {x['checkpoint_units']})",
                        f"{x['expected_mib_per_trial']['after']} MiB expected under ASHA, against "
                        f"{x['expected_mib_per_trial']['before']} MiB with one every unit "
                        f"({x['ratio']:.2f}×; a full-length trial: "
                        f"{x['full_trial_checkpoints']['after']} checkpoints instead of "
                        f"{x['full_trial_checkpoints']['before']})", "fewer and leaner",
                        k["when"]))
    if s := r.get("sources"):
        for key, where in (("methods", "CIFAR-100 stand-in"),
                           ("digits", "real digits 5–9 from 0–4 (load_digits)")):
            m = s.get(key)
            if not m:
                continue
            out.append((f"Source pretraining, {where}: val acc after {s['units']}×"
                        f"{s['steps_per_unit']} steps ({len(s['seeds'])} seeds; "
                        f"{s['source_steps']} source steps)",
                        "fine-tuned from a random head: "
                        + ", ".join(f"{k} {v['val_acc']:.3f}" for k, v in m.items())
                        + ("; from the probe (LP-FT): " + ", ".join(
                            f"{k} {v['val_acc_probe_init']:.3f}" for k, v in m.items())
                           if all("val_acc_probe_init" in v for v in m.values()) else "")
                        + "; linear probe on the frozen backbone: "
                        + ", ".join(f"{k} {v['probe_val_acc']:.3f}" for k, v in m.items()),
                        "each pretraining above none", s["when"]))
    if g := r.get("aggregate"):
        result = "; ".join(
            f"{arm}: {'named' if a['first_rung_check_names_slow_task'] else 'not named'}, "
            f"kept ranks {a['promoted_slow_task_ranks']}, winner's slow acc "
            f"{a['winner_slow_val_acc']}" for arm, a in g["arms"].items())
        out.append(("Slow task at ASHA's first rung (12 trials; is it named by the report's "
                    "first-rung check; where the kept trials rank on it; the winner's val acc "
                    "on it)", result, "the slow task has a say", g["when"]))
    if s := r.get("shared_work"):
        out.append(("Shared work, warm vs cold (tokenise; source pretraining)",
                    f"{s['tokenise_speedup']}× ; {s['source_speedup']}× faster warm", "—",
                    s["when"]))
    if (x := r.get("heldout_text")) and "best_val_acc_at_same_time" in x:
        same, end = x["best_val_acc_at_same_time"], x["best_val_acc_at_end"]
        fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
        out.append((
            "Frozen-features cache on real text (two docstring tasks: "
            + ", ".join(f"{t} {n['classes']} classes" for t, n in x["tasks"].items())
            + f"; minilm, {x['trials']['cache']} trials with the cache, "
            f"{x['trials']['no_cache']} without): best val acc at the same time into the "
            f"search ({x['same_time_s']:.0f} s: the search without the cache), with vs without",
            "; ".join(f"{t} {fmt(same['cache'][t])} vs {fmt(same['no_cache'][t])}"
                      for t in same["cache"])
            + " (at the end: " + "; ".join(f"{t} {fmt(end['cache'][t])} vs "
                                          f"{fmt(end['no_cache'][t])}" for t in end["cache"])
            + f"; searches {x['search_s']['cache']:.0f} s vs {x['search_s']['no_cache']:.0f} s)",
            "higher with the cache", x["when"]))
    if h := r.get("head_store"):
        for key, where in (("single_stream", "on the head node"),
                           ("cross_node", "from a second Ray node")):
            x = h.get(key) or {}
            if "write_ratio" in x:
                out.append((f"Head store, one {x['file_mib']} MiB file {where}: write / read",
                            f"{x['write_ratio']:.2f}× / {x['read_ratio']:.2f}× a plain local copy "
                            f"({x['head_store_write_mib_s']:.0f} / {x['head_store_read_mib_s']:.0f}"
                            f" vs {x['plain_copy_mib_s']:.0f} MiB/s); peak Python memory "
                            f"{x['peak_python_mib_write']} MiB", "≥ 0.5×", h["when"]))
        rounds = [(f"{n} trials", x) for n, x in sorted((h.get("rung_rounds") or {}).items(),
                                                        key=lambda kv: int(kv[0]))]
        if remote := (h.get("cross_node") or {}).get("rung_round"):
            rounds.append((f"{remote['writers']} trials on a second Ray node", remote))
        for who, x in rounds:
            if "ratio" in x:
                out.append((f"Head store, {who} writing {x['mib_each']} MiB each at once",
                            f"{x['ratio']:.2f}× plain local writes ({x['aggregate_mib_s']:.0f} vs "
                            f"{x['plain_aggregate_mib_s']:.0f} MiB/s aggregate)", "≥ 0.5×",
                            h["when"]))
        if "rung_rounds" in h:
            top = max(h["rung_rounds"], key=int)
            x = h["rung_rounds"][top]
            stall = h["stall_per_rung_round"][top]
            out.append((f"Head store, {top} trials checkpointing at once",
                        f"{x['aggregate_mib_s']:.0f} MiB/s aggregate; a rung round of bert-base "
                        f"checkpoints stalls {stall['bert_base_s']:.0f} s",
                        f"plain local copy {h['single_stream']['plain_copy_mib_s']:.0f} MiB/s",
                        h["when"]))
    if g := r.get("gpu"):
        out.append((f"GPU ({g['gpu']}): 4 bert-base trials packed vs 1",
                    f"{g['packing_speedup_4_over_1']:.2f}×", "≥ 2.5×", g["when"]))
    return out


def _phases(e: dict, kinds: list[str]) -> list[str]:
    """Every phase of these searches, in the order they first appear (a search kept from an
    earlier run may have phases of its own)."""
    return list(dict.fromkeys(p for k in kinds for p in e[k]["slot_seconds"]))


def _plots(r: dict[str, dict], doc: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    if e := r.get("search_efficiency"):
        fig, ax = plt.subplots(figsize=(7, 2.6))
        kinds = [k for k in ("cold", "warm", "long") if e.get(k)]
        phases = _phases(e, kinds)
        left = [0.0] * len(kinds)
        for phase in phases:
            vals = [max(0.0, e[k]["slot_share"].get(phase, 0.0)) for k in kinds]
            ax.barh(kinds, vals, left=left, label=phase)
            left = [a + b for a, b in zip(left, vals, strict=True)]
        ax.set_xlabel("share of slot-time (wall × slots)")
        ax.legend(ncol=3, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35))
        fig.tight_layout()
        fig.savefig(common.OUT / "phases.png", dpi=110)
        plt.close(fig)
        made.append(os.path.relpath(common.OUT / "phases.png", doc.parent))
    if (h := r.get("head_store")) and "stall_per_rung_round" in h:
        fig, ax = plt.subplots(figsize=(5, 3))
        ns = sorted(h["stall_per_rung_round"], key=int)
        ax.plot([int(n) for n in ns], [h["stall_per_rung_round"][n]["bert_base_s"] for n in ns],
                "o-", label="bert-base (1.3 GB)")
        if all("minilm_s" in h["stall_per_rung_round"][n] for n in ns):
            ax.plot([int(n) for n in ns], [h["stall_per_rung_round"][n]["minilm_s"] for n in ns],
                    "s-", label="minilm")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("trials checkpointing in one rung round")
        ax.set_ylabel("stall (s)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(common.OUT / "head_store_stall.png", dpi=110)
        plt.close(fig)
        made.append(os.path.relpath(common.OUT / "head_store_stall.png", doc.parent))
    return made


def write(doc: Path = DOC) -> Path:
    """``doc`` from the JSON files in ``common.OUT`` (the quick run's: its own folder)."""
    r = _load()
    any_result = max(r.values(), key=lambda x: x.get("when", ""), default={})
    lines = ["# Benchmarks", "",
             "Generated by `make bench` (`benchmarks/run_all.py`) from `benchmarks/results/*.json`."
             " Each figure is measured side by side with its baseline in one run. Benchmarks, not"
             " tests: no build fails on them.", "",
             f"Machine: {any_result.get('cpus', '?')} CPU cores ({any_result.get('machine', '?')}),"
             f" Python {any_result.get('python', '?')}, torch {any_result.get('torch', '?')}, "
             f"GPU: {any_result.get('gpu') or 'none'}.", "",
             "| Measure | Result | Baseline / goal | Measured |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(r)]
    if e := r.get("search_efficiency"):
        kinds = [k for k in ("cold", "warm", "long") if e.get(k)]
        lines += ["", "## Where a search's slot-time goes", "",
                  "| Phase | " + " | ".join(f"{k} (slot-s)" for k in kinds) + " |",
                  "|---" * (len(kinds) + 1) + "|"]
        for phase in _phases(e, kinds):
            lines.append(f"| {phase} | " + " | ".join(str(e[k]["slot_seconds"].get(phase, "—"))
                                                      for k in kinds) + " |")
        if counted := e.get("counts_as_work"):
            lines += ["", f"Counted as training and evaluating: {counted}."]
    if (h := r.get("head_store")) and "rung_rounds" in h:
        lines += ["", "## The head store at scale", "",
                  "| Trials writing at once | Aggregate MiB/s | Stall per rung round, bert-base |"
                  " Stall, minilm |", "|---|---|---|---|"]
        for n, x in sorted(h["rung_rounds"].items(), key=lambda kv: int(kv[0])):
            st = h["stall_per_rung_round"][n]
            lines.append(f"| {n} | {x['aggregate_mib_s']} | {st['bert_base_s']} s | "
                         f"{st.get('minilm_s', '—')} s |")
        cross = h.get("cross_node") or {}
        remote = cross.get("rung_round") or {}
        lines += ["", "These writers run on the head node (one machine), where a trial writes "
                  "the store's folder itself: a rung round costs N × checkpoint size ÷ that "
                  "rate (measured with 8 MiB files). A trial on another node streams its bytes "
                  "to the store's actor over a connection of its own instead"
                  + (f": {cross['head_store_write_mib_s']:.0f} MiB/s for one stream between two "
                     "Ray nodes on this machine" if cross.get("head_store_write_mib_s") else "")
                  + (f", {remote['aggregate_mib_s']:.0f} MiB/s for {remote['writers']} at once"
                     if remote.get("aggregate_mib_s") else "") + ". "
                  "Between real machines the link sets the pace: 10 GbE carries at most about "
                  "1190 MiB/s into the head node. For small checkpoints (the CNN, minilm with "
                  "frozen layers: a few MiB) a round of tens of trials costs seconds. bert-base "
                  "checkpoints (1.3 GB with AdamW state) of tens of remote trials stall a round "
                  "for tens of seconds even at line rate (below): for them use shared storage "
                  "(`--storage s3://…`, or an NFS path with `--set head_store=false`), which "
                  "every node writes to directly."]
    if (h := r.get("head_store")) and "32" in (h.get("rung_rounds") or {}):
        lines += ["", "## On paper: the gpu preset's checkpoint stall", "", *_gpu_stall(h)]
    if m := r.get("simulated"):
        lines += ["", "## ASHA settings in simulation", "",
                  f"The recorded full-budget searches (`benchmarks/recorded/`: 27 configurations "
                  f"× 27 units on both stand-in tasks, the smoke preset's models; A on data seed "
                  f"0, B on seed 1) replayed {m['replays']} times each by `metatune simulate`'s "
                  "engine, 2 slots. Best: the winner's meta-score at full budget over the "
                  "recorded best (mean of A and B); compute: units over every trial to max_t.",
                  "", "| Setting | Best | Compute | A | B | Meets ≥ 0.97 at ≤ ⅓ |",
                  "|---|---|---|---|---|---|"]
        for t in m["asha"]:
            per = t["per_recording"]
            lines.append(f"| {t['setting']} | {t['best_fraction']:.3f} | "
                         f"{t['compute_fraction']:.2f} | "
                         + " | ".join(f"{per[k]['best_fraction']:.3f} at "
                                      f"{per[k]['compute_fraction']:.2f}"
                                      for k in ("standins-a", "standins-b"))
                         + f" | {'yes' if t['meets_goal'] else 'no'} |")
    plots = _plots(r, doc)
    if plots:
        lines += [""] + [f"![{Path(p).stem}]({p})" for p in plots]
    doc.write_text("\n".join(lines) + "\n")
    return doc



def _gpu_stall(h: dict) -> list[str]:
    """Issue 20's arithmetic: a rung round of 32 bert-base trials checkpointing over 10 GbE,
    from the measured rate at 32 writers and the anchor of ~255 samples/s (bf16, one GPU)."""
    ckpt = h["bert_base_checkpoint_mib"]  # 110 M parameters × 4 bytes × 3 (weights, 2 moments)
    # On a GPU cluster the trials run on worker nodes, whose bytes go through the store's actor:
    # the cross-node stream is the store's rate there (the 32-writer round ran on the head node).
    cross = h.get("cross_node") or {}
    if (cross.get("rung_round") or {}).get("writers") == 32:
        rate = cross["rung_round"]["aggregate_mib_s"]
        measured = "32 trials on a second Ray node writing at once, on this machine"
    elif cross.get("head_store_write_mib_s"):
        rate = cross["head_store_write_mib_s"]
        measured = "one stream from a second Ray node, on this machine"
    else:
        rate, measured = h["rung_rounds"]["32"]["aggregate_mib_s"], "32 writers on the head node"
    link = 10e9 / 8 / 2**20  # 10 GbE into the head node, MiB/s
    per_trial = 255 / 2  # the gpu preset packs 2 trials per GPU
    train = 2 * 100 * 32 / per_trial  # first rung: grace 2 units of 100 steps, batch 32
    stall_store, stall_link = 32 * ckpt / min(rate, link), 32 * ckpt / link
    return [
        f"- One bert-base checkpoint: {ckpt} MiB (110 M parameters × 4 bytes × 3: the weights "
        "and AdamW's two moments; unfreeze_frac 1).",
        f"- A rung round of 32 trials moves {32 * ckpt / 1024:.1f} GiB into the head node.",
        f"- Training of that round: the first rung is 2 units × 100 steps × 32 examples per "
        f"trial at 255 / 2 = {per_trial:.0f} samples/s (2 trials per GPU): {train:.0f} s.",
        f"- Stall at the head store's measured rate ({rate:.0f} MiB/s: {measured}): "
        f"{stall_store:.0f} s = {100 * stall_store / train:.0f} % of the round's "
        "training.",
        f"- Stall at 10 GbE line rate ({link:.0f} MiB/s), whatever the store does: "
        f"{stall_link:.0f} s = {100 * stall_link / train:.0f} %.",
        f"- For ≤ 10 % the round may stall {0.1 * train:.0f} s: {32 * ckpt / (0.1 * train) / 1024:.1f}"
        " GiB/s into one node, beyond a 10 GbE link. Full-size bert-base checkpoints of 32 "
        "trials cannot all reach the head node within the goal; smaller checkpoints "
        "(frozen blocks are not stored: unfreeze_frac ½ halves them) or shared storage that "
        "every node writes to (`--storage s3://…`, NFS with `--set head_store=false`) can.",
    ]


if __name__ == "__main__":
    print(write())
