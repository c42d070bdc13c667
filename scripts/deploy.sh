#!/usr/bin/env bash
# `make deploy` (or scripts/deploy.sh [--dry-run] [--allow-critical]): release the current commit.
#   1. read the infrastructure's outputs (terraform output -json in deployment/)
#   2. build the static binary and the image for the stack's architecture, tagged with the
#      git revision
#   3. push it to the ECR repository, and read back its digest
#   4. wait for ECR's scan of it (scan on push) and refuse an image with CRITICAL findings,
#      unless --allow-critical (or ALLOW_CRITICAL_FINDINGS=1) says to release it anyway
#   5. register a task definition revision: the family's latest one, with its tags, naming the
#      new image by digest
#   6. point the service at it
#   7. wait until the service is stable, then check that ECS kept the release: the primary
#      deployment runs the revision registered in 5 and its rollout is COMPLETED. ECS rolls a
#      failed release back (circuit breaker, alarms) and is then stable on the old revision,
#      which the wait alone takes for success; this step fails instead, and says why.
# --dry-run does 1, reads the service and its task definitions (AWS read access:
# ecs:DescribeServices and ecs:DescribeTaskDefinition), prints the task definition it would
# register, and shows 2–7 without changing anything.
#
# Needs: the AWS CLI with credentials for the stack's account, python3, terraform (unless
# TF_OUTPUT_JSON), git, and a container builder (a docker engine that answers, or podman);
# `make static` installs musl-tools (and for arm64 gcc-aarch64-linux-gnu) as root or via sudo.
#
# Environment: IMAGE_TAG (default: the commit, 12 hex digits), IMAGE_BASE (the image's base;
# default: the Dockerfile's, pinned by digest), TF_OUTPUT_JSON (a file holding
# `terraform output -json`, instead of running terraform), CONTAINER_TOOL (docker or podman;
# default: as `make image` chooses, scripts/lib.sh's container_tool), SOURCE_DATE_EPOCH (the
# image's timestamps; default: the commit's time), ALLOW_CRITICAL_FINDINGS=1 (as
# --allow-critical), SCAN_TIMEOUT (seconds to wait for ECR's scan; default 600), and the usual
# AWS variables (AWS_PROFILE, AWS_ENDPOINT_URL…).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

dry_run=0
allow_critical=${ALLOW_CRITICAL_FINDINGS:-0}
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    --allow-critical) allow_critical=1 ;;
    *) echo "usage: scripts/deploy.sh [--dry-run] [--allow-critical]" >&2; exit 2 ;;
  esac
done

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
# The Dockerfile's base, pinned by digest, unless IMAGE_BASE names another.
base=()
[ -z "${IMAGE_BASE:-}" ] || base=(--build-arg "BASE=$IMAGE_BASE")
run make "$make_target"
run "$tool" build "${stamp[@]}" --platform "$platform" ${base[@]+"${base[@]}"} \
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
repository_name=${repository#*/}
if [ "$dry_run" = 1 ]; then
  digest="<digest>"
else
  digest=$(aws ecr describe-images --repository-name "$repository_name" --image-ids "imageTag=$tag" \
    --query 'imageDetails[0].imageDigest' --output text) || fail "cannot find $image in ECR after the push"
fi
# The task definition names the image by digest: what was scanned is what runs, whatever
# happens to the tag.
image_ref="$repository@$digest"
echo "    pushed $image_ref"

step "waiting for ECR's scan of the image"
# Prints the scan's status, the number of CRITICAL findings and up to five of their names, on
# one line; NONE while the scan has not begun (ECR scans on push, a moment later).
scan_result() {
  local answer
  if ! answer=$(aws ecr describe-image-scan-findings --repository-name "$repository_name" \
      --image-id "imageDigest=$digest" --output json 2>&1); then
    case "$answer" in
      *ScanNotFoundException*) echo "NONE 0"; return 0 ;;
      *) printf '%s\n' "$answer" >&2; return 1 ;;
    esac
  fi
  python3 -c 'import json, sys
d = json.loads(sys.stdin.read())
findings = d.get("imageScanFindings") or {}
critical = (findings.get("findingSeverityCounts") or {}).get("CRITICAL", 0)
# Basic scanning lists findings; enhanced scanning (Amazon Inspector) lists enhancedFindings.
names = [f.get("name") for f in findings.get("findings") or [] if f.get("severity") == "CRITICAL"]
names += [(f.get("packageVulnerabilityDetails") or {}).get("vulnerabilityId") or f.get("title")
          for f in findings.get("enhancedFindings") or [] if f.get("severity") == "CRITICAL"]
print((d.get("imageScanStatus") or {}).get("status") or "NONE", critical,
      " ".join(n for n in names[:5] if n))' <<<"$answer"
}
if [ "$dry_run" = 1 ]; then
  run aws ecr describe-image-scan-findings --repository-name "$repository_name" --image-id "imageDigest=$digest"
  echo "    (dry run) refuse the image if it has CRITICAL findings$([ "$allow_critical" = 1 ] && echo ' (not: --allow-critical)')"
else
  deadline=$((SECONDS + ${SCAN_TIMEOUT:-600}))
  while :; do
    result=$(scan_result) || fail "cannot read ECR's scan of $image_ref"
    read -r status critical names <<<"$result"
    case "$status" in
      # COMPLETE: basic scanning is done; ACTIVE: enhanced scanning has results and goes on.
      COMPLETE | ACTIVE) break ;;
      UNSUPPORTED_IMAGE)
        echo "    ECR cannot scan this image (no operating system it knows, e.g. FROM scratch): no findings to check"
        break ;;
      FAILED | SCAN_ELIGIBILITY_EXPIRED | FINDINGS_UNAVAILABLE)
        [ "$allow_critical" = 1 ] || fail "ECR's scan of $image_ref ended $status: nothing says it has no critical vulnerability (release it anyway with --allow-critical)"
        echo "    ECR's scan ended $status; released anyway (--allow-critical)"
        break ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
      [ "$allow_critical" = 1 ] || fail "no scan result for $image_ref within ${SCAN_TIMEOUT:-600} s (status $status); release it anyway with --allow-critical"
      echo "    no scan result in time; released anyway (--allow-critical)"
      break
    fi
    sleep 5
  done
  if [ "${critical:-0}" -gt 0 ]; then
    [ "$allow_critical" = 1 ] || fail "ECR's scan found $critical CRITICAL finding(s) in $image_ref: ${names:-see below}. Rebuild on a patched base (the Dockerfile's BASE), or release anyway with --allow-critical. Details: aws ecr describe-image-scan-findings --repository-name $repository_name --image-id imageDigest=$digest"
    echo "    $critical CRITICAL finding(s) (${names:-unnamed}); released anyway (--allow-critical)"
  fi
  echo "    scan $status: ${critical:-0} critical"
fi

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
# With its tags, which ECS reports only when asked (--include TAGS) and a new revision would
# otherwise lose: Terraform's default_tags, for cost allocation.
aws ecs describe-task-definition --task-definition "$latest" --include TAGS --output json >"$work/current.json" \
  || fail "cannot read task definition $latest"
python3 - "$work/current.json" "$image_ref" >"$work/next.json" <<'PY' || fail "cannot render the task definition"
import json, sys
described = json.load(open(sys.argv[1]))
task = described["taskDefinition"]
# Fields ECS reports but does not take back.
for key in ("taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
            "registeredAt", "registeredBy", "deregisteredAt"):
    task.pop(key, None)
if described.get("tags"):
    task["tags"] = described["tags"]
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
  run aws ecs describe-services --cluster "$cluster" --services "$service"
  echo "    (dry run) fail unless the primary deployment runs <new revision>, rollout COMPLETED"
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
stable=1
aws ecs wait services-stable --cluster "$cluster" --services "$service" || stable=0

step "checking that ECS kept the release"
# Stable says nothing about which revision: after a rollback ECS is stable on the previous
# one. The primary deployment must run the revision registered above with its rollout
# COMPLETED; otherwise this says what runs instead, each deployment's rollout state and reason
# (the circuit breaker's, or the alarm's), and the service's last events.
aws ecs describe-services --cluster "$cluster" --services "$service" --output json >"$work/service.json" \
  || fail "cannot describe service $service"
if ! python3 - "$work/service.json" "$next" "$stable" >&2 <<'PY'; then
import json, sys
service = json.load(open(sys.argv[1]))["services"][0]
registered, stable = sys.argv[2], sys.argv[3] == "1"
deployments = service.get("deployments") or []
primary = next((d for d in deployments if d.get("status") == "PRIMARY"), {})
runs = primary.get("taskDefinition") or service.get("taskDefinition")
state = primary.get("rolloutState")
if runs == registered and state == "COMPLETED" and stable:
    sys.exit(0)


def revision(arn):
    return (arn or "?").rsplit("/", 1)[-1]


if runs != registered:
    print(f"deploy: ECS rolled the release back: the service runs {revision(runs)}, "
          f"not {revision(registered)}, which this release registered")
elif state != "COMPLETED":
    print(f"deploy: the release did not complete: {revision(registered)} is the primary "
          f"deployment, rollout {state or 'unknown'}: {primary.get('rolloutStateReason', '')}")
else:
    print(f"deploy: {service.get('serviceName')} did not become stable in time")
print("  deployments:")
for d in deployments:
    print(f"    {d.get('id')} {revision(d.get('taskDefinition'))} {d.get('status')}, "
          f"rollout {d.get('rolloutState', '-')}: {d.get('rolloutStateReason', '')}")
print("  last service events:")
for event in (service.get("events") or [])[:8]:
    print(f"    {event.get('createdAt')} {event.get('message')}")
sys.exit(1)
PY
  fail "not released: $image_ref (aws ecs describe-services --cluster $cluster --services $service)"
fi
step "released $image_ref as $next"
