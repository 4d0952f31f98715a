#!/usr/bin/env bash
# The GPU half of issue 5, in one command: decode ms/token vs number of images at a 1B-class text model, bf16.
#
#   1. bench/decode_vs_images.py: vlfuse concat (LLaVA) vs cross-attention, same encoder / connector / LLM config
#      (random Llama-3.2-1B-like LLM, 576 visual tokens per image, a block before every 4th layer);
#   2. bench/reference_xattn.py: transformers' own MllamaForConditionalGeneration.generate and
#      IdeficsForVisionText2Text.generate vs vlfuse's generation loop on the very same weights.
#
# Both at 1, 2, 4, 8, 16 images and 32 new tokens. The markdown goes to stdout and, when $OUT is set, to
# $OUT/xattn_gpu.md (progress and warnings to $OUT/xattn_gpu.log). Each part has its own time limit
# (XATTN_LIMIT_DECODE, XATTN_LIMIT_REFERENCE seconds; 180 and 270 by default), so the whole stays under 8 minutes
# and a part that runs out still leaves the other's table.
#
#   bash bench/gpu_xattn.sh            # GPU: cuda, bfloat16, 1B-class
#   bash bench/gpu_xattn.sh --tiny     # CPU check of the same path: tiny configs, float32 (or XATTN_TINY=1)
#
# Python: $PYTHON (default: .venv/bin/python if present, else python3). A transformers wheel in .whl/ (carried
# to the device machine, see docs/performance.md) is installed to $XATTN_SITE (/tmp/site) first and wins.
set -uo pipefail
cd "$(dirname "$0")/.."

tiny=${XATTN_TINY:-0}
[[ "${1:-}" == "--tiny" ]] && tiny=1
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
site=${XATTN_SITE:-/tmp/site}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || { echo "installing .whl/*.whl into $site failed" >&2; exit 1; }
  export PYTHONPATH="$site"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

report=/dev/null
log=/dev/null
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  report="$OUT/xattn_gpu.md"
  log="$OUT/xattn_gpu.log"
  : >"$report"
  : >"$log"
fi
say() { printf '%s\n' "$*" | tee -a "$report"; }

if [[ "$tiny" == 1 ]]; then
  common=(--device cpu --dtype float32 --threads 1 --repeats 3)
  decode=(--image-size 40 --patch-size 8)
  reference=(--preset tiny)
  title="tiny configs on CPU (a check of the GPU script)"
else
  common=(--device cuda --dtype bfloat16)
  llm='{"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
        "max_position_embeddings": 16384, "tie_word_embeddings": false}'
  decode=(--repeats 5 --every 4 --image-size 192 --patch-size 8 --llm-config "$llm")
  reference=(--preset 1b --repeats 3)
  title="1B-class text model, bfloat16"
fi

start=$SECONDS
say "# Cross-attention decode vs images: $title"
say ""
say "$("$PYTHON" - <<'EOF' 2>>"$log"
import platform, torch, transformers
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
where = transformers.__file__.rsplit("/transformers/", 1)[0]
print(f"{gpu}; Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__} "
      f"(from {where})")
EOF
)"
say ""

run_part() {  # run_part TITLE LIMIT SCRIPT ARGS...: its markdown to stdout and the report, stderr to the log
  local part=$1 limit=$2
  shift 2
  say "## $part"
  say ""
  local shown="PYTHONPATH=src python3" arg
  for arg in "$@"; do
    arg=$(printf '%s' "$arg" | tr -s ' \n' ' ')
    if [[ "$arg" == *" "* ]]; then shown+=" '$arg'"; else shown+=" $arg"; fi
  done
  say '```'
  say "$shown"
  say '```'
  say ""
  local t0=$SECONDS
  timeout "$limit" "$PYTHON" "$@" 2> >(tee -a "$log" >&2) | tee -a "$report"
  local rc=${PIPESTATUS[0]}
  say ""
  if [[ $rc -ne 0 ]]; then
    say "**$part stopped: exit status $rc (124: over its ${limit} s limit); see xattn_gpu.log.**"
  else
    say "($part took $((SECONDS - t0)) s.)"
  fi
  say ""
  return "$rc"
}

status=0
run_part "vlfuse: concat vs cross-attention" "${XATTN_LIMIT_DECODE:-180}" \
  bench/decode_vs_images.py "${common[@]}" "${decode[@]}" || status=1
run_part "transformers generate vs vlfuse, same weights" "${XATTN_LIMIT_REFERENCE:-270}" \
  bench/reference_xattn.py "${common[@]}" "${reference[@]}" || status=1
say "Total: $((SECONDS - start)) s."
exit "$status"
