"""OpenVINO int8 (NNCF post-training quantization) beside OpenVINO bf16/fp32, same run.

Not a Sift backend (yet): this measures whether one is worth having. It converts the bundled
model with the engine's own OpenVINO export, quantizes the IR with NNCF three ways (default
settings; the MIXED preset with SmoothQuant; weights only), and times 256-token chunks through
each, with the cosine of the pooled vectors to OpenVINO fp32 on the same chunks, and with
--ndcg the dense nDCG@10 of each through `sift eval`'s machinery (engine/evaluate.py).
Calibration: 300 Cranfield documents, one unpadded sequence each.

    .venv/bin/pip install nncf            # not a dependency of Sift
    .venv/bin/python bench/openvino_int8.py [--chunks 256] [--ndcg ../shared/data/ir/cranfield] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CRANFIELD = ROOT.parent / "shared" / "data" / "ir" / "cranfield" / "corpus.jsonl"


class _Compiled:
    """An Embedder (engine/embed.py's protocol) over one compiled variant, for engine/evaluate.py."""

    def __init__(self, base, request, feed, name: str) -> None:
        self.base, self.request, self.feed = base, request, feed
        self.model_id = f"{base.model_id}+{name.replace(' ', '_')}"
        self.ndim, self.max_tokens = base.ndim, base.max_tokens

    def token_offsets(self, text: str):
        return self.base.token_offsets(text)

    def embed_documents(self, texts) -> np.ndarray:
        out = []
        for i in range(0, len(texts), 16):
            inputs, mask = self.feed(list(texts[i:i + 16]))
            hidden = np.asarray(self.request.infer(inputs)[0], dtype=np.float32)
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(1) / m.sum(1)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.concatenate(out) if out else np.empty((0, self.ndim), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=256, help="256-token chunks timed per variant")
    ap.add_argument("--ndcg", metavar="BEIR_DIR", help="also score dense nDCG@10 on this collection")
    ap.add_argument("--out", help="write the JSON here")
    args = ap.parse_args()
    from engine.embed import block_openvino_telemetry

    block_openvino_telemetry()  # as Sift does: no usage reports from OpenVINO or NNCF
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    from bench.backends import gflop_per_chunk, matmul_peak, sample_chunks
    from engine.embed import SentenceTransformerEmbedder

    with tempfile.TemporaryDirectory(prefix="sift-int8-") as cache:
        embedder = SentenceTransformerEmbedder(backend="openvino", precision="fp32", cache_dir=Path(cache))
        embedder.warm_up()  # converts the model to OpenVINO IR in the cache
        tokenizer = embedder.model.tokenizer
        texts = sample_chunks(embedder, args.chunks)
        core = ov.Core()
        xml = embedder._export_dir() / "model.xml"
        names = {p.get_any_name() for p in core.read_model(str(xml)).inputs}

        def feed(batch: list[str]) -> tuple[dict, np.ndarray]:
            f = tokenizer(batch, padding=True, truncation=True, max_length=256, return_tensors="np")
            return {k: v for k, v in f.items() if k in names}, f["attention_mask"]

        with open(CRANFIELD, encoding="utf-8") as fh:
            docs = [f"{d.get('title', '')} {d['text']}" for d in map(json.loads, fh)][:300]
        calibration = nncf.Dataset([feed([d])[0] for d in docs])
        started = time.perf_counter()
        variants = {
            "fp32": (core.read_model(str(xml)), "f32"),
            "bf16": (core.read_model(str(xml)), "bf16"),
            "int8 (nncf defaults)": (nncf.quantize(core.read_model(str(xml)), calibration,
                                                   model_type=nncf.ModelType.TRANSFORMER), "bf16"),
            "int8 (MIXED, SmoothQuant 0.5)": (nncf.quantize(
                core.read_model(str(xml)), calibration, model_type=nncf.ModelType.TRANSFORMER,
                preset=nncf.QuantizationPreset.MIXED, advanced_parameters=AdvancedQuantizationParameters(
                    smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=0.5))), "bf16"),
            "int8 weights only": (nncf.compress_weights(core.read_model(str(xml)),
                                                        mode=nncf.CompressWeightsMode.INT8_ASYM), "bf16"),
        }
        quantize_s = time.perf_counter() - started
        peak = matmul_peak()
        result = {"chunks": len(texts), "quantize_s": round(quantize_s, 1), "matmul_gflops": peak,
                  "gflop_per_chunk": round(gflop_per_chunk(), 2), "variants": {}}
        reference = None
        print(f"{'variant':32} {'chunks/s':>9} {'× bf16':>7} {'cos mean':>9} {'cos min':>8}")
        for name, (model, hint) in variants.items():
            compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                         "PERFORMANCE_HINT": "LATENCY"})
            request = compiled.create_infer_request()
            request.infer(feed(texts[:16])[0])
            t0 = time.perf_counter()
            vectors = _Compiled(embedder, request, feed, name).embed_documents(texts)  # mean pooling, normalised
            speed = len(texts) / (time.perf_counter() - t0)
            reference = vectors if reference is None else reference
            cos = (vectors * reference).sum(1)
            row = {"chunks_per_s": round(speed, 1), "cosine_mean": round(float(cos.mean()), 5),
                   "cosine_min": round(float(cos.min()), 5)}
            if args.ndcg and name != "int8 weights only":
                from engine.evaluate import evaluate

                wrapped = _Compiled(embedder, request, feed, name)
                dense = evaluate(args.ndcg, modes=["dense"], embedder=wrapped, log=lambda m: None)["modes"]["dense"]
                row["ndcg@10"] = round(dense["ndcg@10"], 4)
            result["variants"][name] = row
            bf16 = result["variants"].get("bf16", {}).get("chunks_per_s")
            ratio = f"{speed / bf16:.2f}" if bf16 else "–"
            quality = f"  nDCG@10 {row['ndcg@10']:.4f}" if "ndcg@10" in row else ""
            print(f"{name:32} {speed:9.1f} {ratio:>7} {row['cosine_mean']:9.5f} {row['cosine_min']:8.5f}{quality}")
        print(f"matmul peak GFLOP/s: {peak}; MiniLM-L6 ≈ {gflop_per_chunk():.2f} GFLOP per 256-token chunk")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
