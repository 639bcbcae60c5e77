#!/usr/bin/env bash
# Install the benchmark peer (mrpro's EPG) into .peer/, beside the project's venv and never into it:
# mrpro's full dependency list would pull torchvision and CUDA builds. Run from the repository top.
set -euo pipefail
rm -rf .peer && mkdir -p .peer
python -m pip download -q --no-deps 'mrpro==0.261015' -d .peer/wheel
python -m zipfile -e .peer/wheel/mrpro-*.whl .peer/src
python -m pip install -q --target .peer/deps --no-deps einops ismrmrd ptwt pypulseq torchnd pytorch-finufft \
  finufft xsdata PyWavelets requests urllib3 idna certifi charset-normalizer
echo "peer installed in .peer/ (python -m benchmarks --only dictionary uses it)"
