#!/usr/bin/env bash
# Assembles a Hugging Face Space in DIR: this folder's app.py, README.md (the Space's metadata) and requirements.txt,
# and the packages with the embedded default (without its ablation checkpoints). Then upload it:
#   bash space/build_space.sh /tmp/icpt-space && hf upload me/icpt-demo /tmp/icpt-space . --repo-type space
set -euo pipefail
DIR=${1:?usage: bash space/build_space.sh DIR}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$DIR"
cp "$ROOT"/space/app.py "$ROOT"/space/README.md "$ROOT"/space/requirements.txt "$DIR"/
for package in icpt modeling_icpt processing_icpt; do
    rm -rf "${DIR:?}/$package"
    # -h: processing_icpt/input_checks.py is a link to modeling_icpt's; a Space needs the file itself
    (cd "$ROOT" && tar -chf - --exclude=__pycache__ --exclude="$package/default/ablations" "$package") | tar -xf - -C "$DIR"
done
echo "Space assembled in $DIR: upload it with  hf upload REPO_ID $DIR . --repo-type space"
