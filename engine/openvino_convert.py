"""Converting the model for OpenVINO, and quantizing it to int8, in a process of its own.

engine/embed.py runs this file in a fresh interpreter (`python -P`, so the engine folder is not
put on sys.path, where its types.py would hide the standard library's; a frozen app runs its own
executable with --openvino-convert, which its launchers hand to main): torch's tracer hangs in a
process that has loaded usearch (usearch 2.26, torch 2.13, openvino 2026.4), and a clean one
converts in seconds. Torch and transformers load only in that process.

    python -P engine/openvino_convert.py export TRANSFORMER_DIR OUT_DIR
    python -P engine/openvino_convert.py quantize MODEL_XML OUT_XML TOKENIZER_DIR TEXTS_JSON
"""

import json
import sys
from collections.abc import Callable

# OpenVINO's converter and NNCF report usage unless they cannot import openvino_telemetry (see
# engine.embed.block_openvino_telemetry): this must come before either is imported.
sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # None blocks an import; typeshed has no room for it


def export(where: str, out: str) -> None:
    """The transformer in `where` as OpenVINO IR, out/model.xml (+ .bin), fp32."""
    import openvino as ov
    import torch
    from transformers import AutoModel, AutoTokenizer

    encoder = AutoModel.from_pretrained(where, local_files_only=True, use_safetensors=True,
                                        dtype=torch.float32).eval()
    sample = AutoTokenizer.from_pretrained(where, local_files_only=True)(["a sample sentence to trace the model"],
                                                                        return_tensors="pt")
    example = {k: v for k, v in sample.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        graph = ov.convert_model(encoder, example_input=example)
    ov.save_model(graph, out + "/model.xml", compress_to_fp16=False)


def quantize(model_xml: str, out: str, tokenizer_dir: str, texts: str) -> None:
    """NNCF's default post-training int8 quantization of model_xml, calibrated on the texts (a JSON list)."""
    import nncf
    import openvino as ov
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    model = ov.Core().read_model(model_xml)
    names = {p.get_any_name() for p in model.inputs}
    samples = []
    with open(texts, encoding="utf-8") as fh:
        for text in json.load(fh):
            features = tokenizer([text], truncation=True, max_length=256, return_tensors="np")
            samples.append({k: v for k, v in features.items() if k in names})
    quantized = nncf.quantize(model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(samples))
    ov.save_model(quantized, out, compress_to_fp16=False)


def main(argv: list[str]) -> int:
    commands: dict[str, Callable[..., None]] = {"export": export, "quantize": quantize}
    commands[argv[0]](*argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
