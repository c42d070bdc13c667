#!/usr/bin/env bash
# `make deploy` (or scripts/deploy.sh [--dry-run]): release the current commit.
#   1. read the infrastructure's outputs (terraform output -json in deployment/)
#   2. build the static binary and the image for the stack's architecture, tagged with the
#      git revision
#   3. push it to the ECR repository
#   4. register a task definition revision: the family's latest one with the new image
#   5. point the service at it
#   6. wait until the service is stable (ECS rolls a failed release back: circuit breaker, alarms)
# --dry-run does 1, reads the service and its task definitions (AWS read access:
# ecs:DescribeServices and ecs:DescribeTaskDefinition), prints the task definition it would
# register, and shows 2–6 without changing anything.
#
# Needs: the AWS CLI with credentials for the stack's account, python3, terraform (unless
# TF_OUTPUT_JSON), git, and a container builder (a docker engine that answers, or podman);
# `make static` installs musl-tools (and for arm64 gcc-aarch64-linux-gnu) as root or via sudo.
#
# Environment: IMAGE_TAG (default: the commit, 12 hex digits), TF_OUTPUT_JSON (a file holding
# `terraform output -json`, instead of running terraform), CONTAINER_TOOL (docker or podman;
# default: as `make image` chooses, scripts/lib.sh's container_tool), SOURCE_DATE_EPOCH (the
# image's timestamps; default: the commit's time), and the usual AWS variables (AWS_PROFILE,
# AWS_ENDPOINT_URL…).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

dry_run=0
case "${1:-}" in
  --dry-run) dry_run=1 ;;
  "") ;;
  *) echo "usage: scripts/deploy.sh [--dry-run]" >&2; exit 2 ;;
esac

step() { printf '==> %s\n' "$*"; }
fail() { printf 'deploy: %s\n' "$*" >&2; exit 1; }
run() {
  if [ "$dry_run" = 1 ]; then printf '    (dry run) %s\n' "$*"; else "$@"; fi
}
need() { command -v "$1" >/dev/null 2>&1 || fail "$1 is needed: $2"; }

need aws "install the AWS CLI (pip install awscli)"
need python3 "to read JSON"

step "reading the infrastructure's outputs"
if [ -n "${TF_OUTPUT_JSON:-}" ]; then
  outputs=$(cat "$TF_OUTPUT_JSON") || fail "cannot read TF_OUTPUT_JSON=$TF_OUTPUT_JSON"
else
  need terraform "to read deployment/'s outputs"
  outputs=$(terraform -chdir=deployment output -json) \
    || fail "terraform output failed: run 'terraform init && terraform apply' in deployment/ first"
fi
output() {
  python3 -c 'import json, sys
d = json.loads(sys.stdin.read())
v = d.get(sys.argv[1], {}).get("value")
if not v:
    sys.exit(1)
print(v)' "$1" <<<"$outputs" || fail "the outputs have no $1: is deployment/ applied and current?"
}
repository=$(output ecr_repository_url)
cluster=$(output cluster_name)
service=$(output service_name)
region=$(output region)
# Stacks from before the architecture variable are x86_64.
architecture=$(output architecture 2>/dev/null) || architecture=x86_64
export AWS_REGION="$region" AWS_DEFAULT_REGION="$region"

tag=${IMAGE_TAG:-$(git rev-parse --short=12 HEAD)}
if [ -z "${IMAGE_TAG:-}" ] && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  fail "uncommitted changes: commit them, or set IMAGE_TAG (tags are immutable, so the tag must name what is built)"
fi
image="$repository:$tag"
echo "    image $image → service $service in cluster $cluster ($region)"

step "building the static binary and the image ($architecture)"
tool=${CONTAINER_TOOL:-$(container_tool)}
[ -n "$tool" ] || fail "no container builder: a docker engine that answers \`docker info\`, or podman"
case "$architecture" in
  arm64) make_target=static-arm64 platform=linux/arm64 binary=target/aarch64-unknown-linux-musl/release/hello ;;
  x86_64) make_target=static platform=linux/amd64 binary=target/x86_64-unknown-linux-musl/release/hello ;;
  *) fail "unknown architecture $architecture in the outputs (arm64 or x86_64)" ;;
esac
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
# podman stamps the image with --timestamp; docker's BuildKit reads the build argument. podman
# builds Docker's format: its default, OCI, has no HEALTHCHECK and podman would drop it.
case "$(basename "$tool")" in
  podman*) stamp=(--format docker --timestamp "$SOURCE_DATE_EPOCH") ;;
  *) stamp=(--build-arg "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH") ;;
esac
run make "$make_target"
run "$tool" build "${stamp[@]}" --platform "$platform" --build-arg BASE="${IMAGE_BASE:-alpine:3.23}" \
  --build-arg BINARY="$binary" -t "$image" .

step "pushing to ECR"
registry=${repository%%/*}
if [ "$dry_run" = 1 ]; then
  run "aws ecr get-login-password | $tool login --username AWS --password-stdin $registry"
else
  aws ecr get-login-password | "$tool" login --username AWS --password-stdin "$registry" \
    || fail "cannot log in to $registry: check your AWS credentials"
fi
run "$tool" push "$image"

step "registering a task definition revision with the new image"
# The family's latest revision, not the one the service runs: Terraform owns the task
# definition's settings (environment, secrets, sizes, platform) and registers a new revision
# when they change; the service keeps running the old one (Terraform ignores the service's
# task_definition, which releases move). A release carries Terraform's latest settings to it.
current=$(aws ecs describe-services --cluster "$cluster" --services "$service" \
  --query 'services[0].taskDefinition' --output text) || fail "cannot describe service $service"
[ -n "$current" ] && [ "$current" != "None" ] || fail "service $service not found in cluster $cluster"
family=$(output task_family 2>/dev/null) || family=$(basename "${current%:*}")
latest=$(aws ecs describe-task-definition --task-definition "$family" \
  --query taskDefinition.taskDefinitionArn --output text) || fail "cannot read task definition family $family"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
aws ecs describe-task-definition --task-definition "$latest" --query taskDefinition >"$work/current.json" \
  || fail "cannot read task definition $latest"
python3 - "$work/current.json" "$image" >"$work/next.json" <<'PY' || fail "cannot render the task definition"
import json, sys
task = json.load(open(sys.argv[1]))
# Fields ECS reports but does not take back.
for key in ("taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
            "registeredAt", "registeredBy", "deregisteredAt"):
    task.pop(key, None)
containers = task["containerDefinitions"]
target = next((c for c in containers if c["name"] == task["family"]), containers[0])
target["image"] = sys.argv[2]
json.dump(task, sys.stdout, indent=2)
PY
echo "    from $latest (the service runs $current)"
if [ "$dry_run" = 1 ]; then
  echo "    the task definition it would register:"
  sed 's/^/    /' "$work/next.json"
  run aws ecs register-task-definition --cli-input-json "file://$work/next.json"
  run aws ecs update-service --cluster "$cluster" --service "$service" --task-definition "<new revision>"
  run aws ecs wait services-stable --cluster "$cluster" --services "$service"
  step "dry run: nothing changed"
  exit 0
fi
next=$(aws ecs register-task-definition --cli-input-json "file://$work/next.json" \
  --query taskDefinition.taskDefinitionArn --output text) || fail "ECS refused the task definition"
echo "    registered $next"

step "updating the service"
aws ecs update-service --cluster "$cluster" --service "$service" --task-definition "$next" >/dev/null \
  || fail "cannot update service $service"

step "waiting for the service to be stable"
aws ecs wait services-stable --cluster "$cluster" --services "$service" \
  || fail "$service did not become stable; ECS rolls a failed deployment back. See: aws ecs describe-services --cluster $cluster --services $service"
step "released $image as $next"
