"""Markdown table of a benchmark results JSON: ``python -m benchmarks.table results.json``."""

from __future__ import annotations

import json
import sys


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def markdown(r: dict) -> str:
    """The figures against their targets, each with its same-run baseline."""
    m = r["machine"]
    lines = [
        f"Machine: {m['platform']}, {m['cpus']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
        f"numpy {m['numpy']}, Python {m['python']}; {'quick' if r.get('quick') else 'full'} run.",
        "",
        "| # | figure | measured | baseline in the same run | target | |",
        "|---|---|---|---|---|---|",
    ]
    add = lines.append
    if "dictionary" in r:
        d = r["dictionary"]
        add(
            f"| 1 | dictionary generation, knee sequence (1750 points) | {d['atoms_per_s']:,.0f} atoms/s | "
            f"reference complex EPG {d['reference_atoms_per_s']:,.0f} atoms/s ({d['ratio_vs_reference']:.1f}x) | "
            f">= 10,000 atoms/s | {_met(d['atoms_per_s'] >= 10_000)} |"
        )
        if isinstance(d.get("peer"), dict):
            add(
                f"| 1b | same, vs the mrpro EPG peer ({d['peer']['atoms']} atoms, one batch) | "
                f"{d['ours_on_peer_atoms_per_s']:,.0f} atoms/s | mrpro {d['peer']['atoms_per_s']:,.0f} atoms/s "
                f"({d['ratio_vs_mrpro']:.1f}x) | >= 5x | {_met(d['ratio_vs_mrpro'] >= 5)} |"
            )
    if "dm_vs_gemm" in r:
        d = r["dm_vs_gemm"]
        add(
            f"| 2 | DM in the SVD domain ({d['voxels']} voxels x {d['atoms']:,} atoms, K {d['rank']}) | "
            f"{d['dm_pairs_per_s']:.2e} pairs/s | complex GEMM of the same blocks {d['gemm_pairs_per_s']:.2e} "
            f"({d['dm_fraction_of_gemm']:.2f}) | >= 0.5 of GEMM | {_met(d['dm_fraction_of_gemm'] >= 0.5)} |"
        )
    if "dm_memory" in r:
        d = r["dm_memory"]
        peaks = ", ".join(f"{s['atoms']:,} atoms: {s['peak_mib']:.0f} MiB" for s in d["sizes"])
        copies = ", ".join(f"{s['atoms_copy_mib']:.0f}" for s in d["sizes"])
        add(
            f"| 3 | DM peak memory, {d['voxels']:,} voxels, budget {d['budget_mib']} MiB | {peaks} | "
            f"conjugated atom copy {copies} MiB | bounded, flat in atoms | see text |"
        )
    if "nn_inference" in r:
        d = r["nn_inference"]
        for net in d["networks"]:
            mape = ", ".join(f"{k} {v:.2f}" for k, v in net["mape_pct_snr_50"].items())
            deviation = (
                f"; {net['vs_float32_mean_pct']:.2f} % from float32 on average" if net["precision"] != "float32" else ""
            )
            add(
                f"| 4 | NN inference, {net['model']} {net['hidden']} in {net['precision']} "
                f"(MAPE % at SNR 50 on {d['test_fingerprints']:,} fresh fingerprints: {mape}{deviation}), "
                f"{d['voxels']:,} voxels | {net['nn_voxels_per_s']:,.0f} voxels/s | DM on the same voxels "
                f"{net['dm_over_nn']:.0f}x slower | >= 1,000,000 voxels/s | "
                f"{_met(net['nn_voxels_per_s'] >= 1_000_000)} |"
            )
    if "series_loading" in r:
        d = r["series_loading"]
        add(
            f"| 5 | DICOM series loading ({d['files']} files, {d['image']}^2) | {d['mrfviewer_seconds']:.2f} s | "
            f"bare pydicom.dcmread {d['bare_seconds']:.2f} s ({d['ratio']:.2f}x) | <= 1.5x | "
            f"{_met(d['ratio'] <= 1.5)} |"
        )
    if "gui_click" in r:
        d = r["gui_click"]
        travel = d["with_pointer_travel"]
        add(
            f"| 6 | GUI click to repainted fingerprint ({d['clicks']} clicks, pointer on the pixel first; "
            f"the first click after loading {d['first_ms']:.0f} ms) | median {d['median_ms']:.1f} ms, "
            f"p95 {d['p95_ms']:.1f}, max {d['max_ms']:.0f} | plot repaint alone {d['repaint_only_median_ms']:.1f} ms; "
            f"{travel['clicks']} clicks with pointer travel: median {travel['median_ms']:.1f}, "
            f"max {travel['max_ms']:.0f} | "
            f"< 30 ms | {_met(d['median_ms'] < 30)} (median), {_met(d['max_ms'] < 30)} (max) |"
        )
    if "gui_responsiveness" in r:
        d = r["gui_responsiveness"]
        steps, table, fit = d["slice_step"], d["roi_table"], d["template_fit"]
        add(
            f"| 6b | GUI slice step with label statistics on, demo knee ({steps['volume']['n']} steps, 2 drawn ROIs; "
            f"key press to repainted maps and table) | per volume: p95 {steps['volume']['p95_ms']:.1f} ms, "
            f"per slice: p95 {steps['slice']['p95_ms']:.1f} ms | label statistics off: p95 "
            f"{steps['off']['p95_ms']:.1f} ms | <= 50 ms p95 | "
            f"{_met(max(steps['volume']['p95_ms'], steps['slice']['p95_ms']) <= 50)} |"
        )
        add(
            f"| 6c | ROI table refresh, demo NIST ({table['rows']} rows, {table['values']} values) | median "
            f"{table['median_ms']:.1f} ms, p95 {table['p95_ms']:.1f}, max {table['max_ms']:.1f} | repaint alone "
            f"{table['repaint_only_median_ms']:.1f} ms | <= 16 ms | {_met(table['p95_ms'] <= 16)} (p95) |"
        )
        add(
            f"| 6d | event loop during the NIST template fit ({fit['seconds']:.1f} s, background job) | longest "
            f"gap {fit['longest_gap_ms']:.0f} ms | idle loop {fit['idle_longest_gap_ms']:.0f} ms | <= 50 ms | "
            f"{_met(fit['longest_gap_ms'] <= 50)} |"
        )
    if "batch_speedup" in r:
        d = r["batch_speedup"]
        runs = ", ".join(f"{x['workers']} worker(s) {x['seconds']:.1f} s" for x in d["runs"])
        add(
            f"| 7 | cohort batch on dask, {d['series']} series of {d['image']}^2 | {runs}: "
            f"{d['speedup_2_over_1']:.2f}x | compute-only control {d['control_speedup_2_over_1']:.2f}x | "
            f"near-linear | {_met(d['speedup_2_over_1'] >= 1.7)} |"
        )
    if "volume_memory" in r:
        d = r["volume_memory"]
        add(
            f"| 8 | slab-wise 3D DM, series {d['shape']} ({d['series_mib']:,.0f} MiB) | peak "
            f"{d['peak_traced_mib']:.0f} MiB traced | {d['peak_over_series']:.3f} of the series | "
            f"memory setting {d['memory_setting_mib']} MiB (floor: one slice) | see text |"
        )
    from .round_two import table_rows

    lines += table_rows(r)
    if "scaling" in r:
        s = r["scaling"]
        lines += ["", "Scaling (seconds):", "", "| DM vs atoms | DM vs voxels | DM vs K | dictionary vs atoms |"]
        lines.append("|---|---|---|---|")
        for row in zip(s["dm_vs_atoms"], s["dm_vs_voxels"], s["dm_vs_rank"], s["dictionary_vs_atoms"], strict=True):
            a, v, k, g = row
            lines.append(
                f"| {a['atoms']:,}: {a['seconds']:.3f} | {v['voxels']:,}: {v['seconds']:.3f} | "
                f"{k['rank']}: {k['seconds']:.3f} | {g['atoms']:,}: {g['seconds']:.2f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results.json", encoding="utf-8") as fh:
        print(markdown(json.load(fh)), end="")
