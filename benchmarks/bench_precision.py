"""What bf16 costs a trained model: the default separator scored in fp32 and in bf16, side by side.

``--precision bf16`` (``separate``, ``evaluate``) runs the model under bf16 autocast: about twice
as fast on a CPU with bf16 instructions (``bench_separate.py``). Its stems differ from fp32's;
this benchmark measures whether the *scores* of a trained model differ. The shipped default
separator (``course.pretrained()``, ``meta-tasnet-cpu``) separates the synthetic band's test
songs of its manifest's ``scoring`` entry (8 stereo songs of 8 s at 32 kHz) with
:func:`metalearn_sep.evaluate.band_scores`, once with ``amp=False`` and once with ``amp=True``,
in one process; it prints per source the SI-SDR improvement and the SiSEC SDR of both, their
difference and the time each took. Reported, no target: the issue asks for the change to be
known before bf16 is recommended for evaluation.

    python benchmarks/bench_precision.py [--threads 2] [--no-record]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from metalearn_sep import SOURCES
from metalearn_sep.evaluate import band_scores
from metalearn_sep.pretrained import DEFAULT_SEPARATOR, pretrained, read_manifest
from results_table import add_no_record_flag, record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    add_no_record_flag(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, scoring = pretrained(DEFAULT_SEPARATOR), read_manifest()[DEFAULT_SEPARATOR]["scoring"]
    results = {}
    for name, amp in (("fp32", False), ("bf16", True)):
        began = time.perf_counter()
        gains, sdr = band_scores(model, scoring["sample_rate"], scoring["stereo"], scoring["songs"], scoring["seconds"],
                                 device="cpu", amp=amp)
        results[name] = gains, sdr, time.perf_counter() - began
    print(f"{DEFAULT_SEPARATOR} on {scoring['songs']} test songs of {scoring['seconds']:g} s at {scoring['sample_rate']} Hz "
          f"({'stereo' if scoring['stereo'] else 'mono'}), {args.threads} threads")
    print(f"{'':14s}" + "".join(f"{s:>9s}" for s in (*SOURCES, "mean")) + f"{'seconds':>9s}")
    for name, (gains, sdr, seconds) in results.items():
        for label, values in (("SI-SDRi", gains), ("SDR", sdr)):
            print(f"{label + ' ' + name:14s}" + "".join(f"{v:9.2f}" for v in (*values, np.nanmean(values)))
                  + (f"{seconds:9.1f}" if label == "SDR" else ""))
    change = {label: results["bf16"][k] - results["fp32"][k] for k, label in ((0, "SI-SDRi"), (1, "SDR"))}
    for label, values in change.items():
        print(f"{label + ' bf16-fp32':14s}" + "".join(f"{v:+9.3f}" for v in (*values, np.nanmean(values))))
    if not args.no_record:
        fp32_gain, fp32_sdr, fp32_s = results["fp32"]
        record("bench_precision", [
            (f"{DEFAULT_SEPARATOR}, {scoring['songs']} stereo test songs: mean SI-SDRi / SDR, fp32",
             f"{np.nanmean(fp32_gain):.2f} / {np.nanmean(fp32_sdr):.2f} dB ({fp32_s:.0f} s)"),
            (f"the same in bf16: change of mean SI-SDRi / SDR (per source SDR: {', '.join(SOURCES)})",
             f"{np.nanmean(change['SI-SDRi']):+.3f} / {np.nanmean(change['SDR']):+.3f} dB "
             f"({', '.join(f'{v:+.2f}' for v in change['SDR'])}; {results['bf16'][2]:.0f} s)"),
        ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
