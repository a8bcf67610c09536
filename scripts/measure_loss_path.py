"""The plain Hugging Face loss's peaks measured on this CPU against the training estimate's bytes per token.

For each loss (`hf`, today's transformers; `hf_legacy`, before 4.46), each vocabulary of the
published HF-trainer calibration rows (Llama 2's 32,000, Llama 3's 128,256) and one or two
sequences, runs the loss's op sequence on a 64-wide bf16 LM head at two lengths
(`bench.calibration.loss_probe`) and prints the forward's and the backward's peak per token, in bytes per
vocabulary entry, beside `hf_loss_bytes_per_token`. Exits 1 when one is more than 2% off.

    .venv/bin/python scripts/measure_loss_path.py
"""

from __future__ import annotations

import sys

from bench.estimate.training import hf_loss_bytes_per_token
from bench.calibration.loss_probe import HF_LOSSES, bytes_per_token_and_vocab
from bench.report.terminal import table

VOCABS, SHORT, LONG, TOLERANCE = (32000, 128256), 256, 512, 0.02


def main() -> int:
    rows, bad = [], 0
    for loss in HF_LOSSES:
        for vocab in VOCABS:
            for sequences in (1, 2):
                measured = bytes_per_token_and_vocab(loss, vocab, SHORT, LONG, sequences)
                estimated = hf_loss_bytes_per_token(loss, sequences)
                off = [abs(e / m - 1) > TOLERANCE for m, e in zip(measured, estimated)]
                bad += any(off)
                rows.append([loss, f"{vocab:,}", sequences, f"{measured[0]:.2f}", estimated[0], f"{measured[1]:.2f}",
                             estimated[1], "OFF" if any(off) else "ok"])
    print(table(["loss", "vocabulary", "sequences", "forward measured", "forward estimated", "backward measured",
                 "backward estimated", ""], rows))
    print(f"\nbytes per token per vocabulary entry, slope between {SHORT} and {LONG} tokens a sequence")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
