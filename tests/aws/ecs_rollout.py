"""A stand-in for the `aws` command in tests/deploy.rs: every call goes to the real AWS CLI
(against moto), except `aws ecs describe-services`, whose deployments and events it rewrites as
ECS reports them once a rolling deployment has finished.

Why: moto keeps the deployment it made when the service was created, and `update-service`
neither adds one nor moves it to the new task definition, so moto cannot show a release that
completed, nor one that ECS rolled back. This stub shows either, in the shapes of the
DescribeServices API (`services[].deployments[]`: id, status PRIMARY or ACTIVE, taskDefinition,
rolloutState IN_PROGRESS/COMPLETED/FAILED, rolloutStateReason; `services[].events[]`: id,
createdAt, message, newest first), as the CLI prints them.

  ROLLOUT=completed    the service's task definition (as moto has it after update-service) is
                       the PRIMARY deployment, rollout COMPLETED.
  ROLLOUT=rolled-back  the deployment circuit breaker failed the release and ECS rolled back
                       to ROLLOUT_PREVIOUS (a task definition ARN): that is the service's task
                       definition and its PRIMARY deployment, COMPLETED; the release's
                       deployment is ACTIVE and FAILED, and the events say so.
  REAL_AWS             the real CLI.

`--query` (JMESPath, the CLI's own library) and `--output text|json` are applied here to the
rewritten answer; text prints scalars as the CLI does (a string bare, None for null).
"""

import json
import os
import subprocess
import sys

import jmespath


def option(args, name):
    """Removes `name VALUE` from args; returns VALUE (or None)."""
    if name in args:
        at = args.index(name)
        value = args[at + 1]
        del args[at : at + 2]
        return value
    return None


def rewrite(service):
    scenario = os.environ["ROLLOUT"]
    released = service["taskDefinition"]
    if scenario == "completed":
        service["deployments"] = [
            {
                "id": "ecs-svc/1111111111111111111",
                "status": "PRIMARY",
                "taskDefinition": released,
                "rolloutState": "COMPLETED",
                "rolloutStateReason": "ECS deployment ecs-svc/1111111111111111111 completed.",
            }
        ]
        service["events"] = [
            {
                "id": "e2",
                "createdAt": "2026-12-07T13:05:00+00:00",
                "message": f"(service {service['serviceName']}) has reached a steady state.",
            }
        ]
    elif scenario == "rolled-back":
        previous = os.environ["ROLLOUT_PREVIOUS"]
        name = service["serviceName"]
        service["taskDefinition"] = previous
        deployments = [
            {
                "id": "ecs-svc/2222222222222222222",
                "status": "PRIMARY",
                "taskDefinition": previous,
                "rolloutState": "COMPLETED",
                "rolloutStateReason": "ECS deployment ecs-svc/2222222222222222222 completed.",
            }
        ]
        events = [
            {
                "id": "e3",
                "createdAt": "2026-12-07T13:09:00+00:00",
                "message": f"(service {name}) has reached a steady state.",
            }
        ]
        # Before the update, the service runs `previous` and there is nothing to roll back.
        if released != previous:
            deployments.append(
                {
                    "id": "ecs-svc/3333333333333333333",
                    "status": "ACTIVE",
                    "taskDefinition": released,
                    "rolloutState": "FAILED",
                    "rolloutStateReason": "ECS deployment circuit breaker: tasks failed to start.",
                }
            )
            events += [
                {
                    "id": "e2",
                    "createdAt": "2026-12-07T13:08:00+00:00",
                    "message": f"(service {name}) rolling back to deployment ecs-svc/2222222222222222222.",
                },
                {
                    "id": "e1",
                    "createdAt": "2026-12-07T13:07:00+00:00",
                    "message": f"(service {name}) (deployment ecs-svc/3333333333333333333) deployment failed: tasks failed to start.",
                },
            ]
        service["deployments"] = deployments
        service["events"] = events
    else:
        sys.exit(f"ecs_rollout.py: unknown ROLLOUT={scenario}")


def main():
    real = os.environ["REAL_AWS"]
    args = sys.argv[1:]
    if args[:2] != ["ecs", "describe-services"]:
        os.execv(real, [real] + args)
    query = option(args, "--query")
    output = option(args, "--output") or "json"
    answer = subprocess.run([real] + args + ["--output", "json"], capture_output=True, text=True)
    if answer.returncode != 0:
        sys.stderr.write(answer.stderr)
        sys.exit(answer.returncode)
    described = json.loads(answer.stdout)
    for service in described.get("services", []):
        rewrite(service)
    result = jmespath.search(query, described) if query else described
    if output == "text" and not isinstance(result, (dict, list)):
        print("None" if result is None else result)
    else:
        print(json.dumps(result, indent=4))


if __name__ == "__main__":
    main()
