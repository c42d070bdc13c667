#!/usr/bin/env bash
# CI (.github/workflows): Terraform $TERRAFORM_VERSION for linux_amd64 from HashiCorp's
# releases, checked against their SHA256SUMS, into $RUNNER_TEMP/terraform on the job's PATH.
set -euo pipefail
: "${TERRAFORM_VERSION:?set TERRAFORM_VERSION}" "${RUNNER_TEMP:?not on a GitHub runner}"
cd "$RUNNER_TEMP"
base="https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}"
curl -fsSLO "$base/terraform_${TERRAFORM_VERSION}_linux_amd64.zip"
curl -fsSLO "$base/terraform_${TERRAFORM_VERSION}_SHA256SUMS"
sha256sum --check --ignore-missing "terraform_${TERRAFORM_VERSION}_SHA256SUMS"
unzip -q -o "terraform_${TERRAFORM_VERSION}_linux_amd64.zip" -d "$RUNNER_TEMP/terraform"
echo "$RUNNER_TEMP/terraform" >> "$GITHUB_PATH"
