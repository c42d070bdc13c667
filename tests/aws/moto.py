"""Drives the moto AWS emulator for the cluster tests: a signed-in user and a cluster of
instances on 127.0.0.x behind a Classic ELB and an instance target group.

  moto.py credentials             -> {"key": ..., "secret": ...}   (the only unsigned calls)
  moto.py cluster PORT IP [IP...] -> {"instances": {ip: id}, "elb": name, "target_group": arn}
  moto.py role-credentials        -> {"key", "secret", "token"} of an assumed allow-all role
  moto.py ecs-service TASK_JSON    -> an ECS service on that task definition, and an ECR repo
  moto.py register-task TASK_JSON -> a new revision of the task definition, as Terraform registers
                                     one when its settings change: {"revision": ...}
  moto.py service-task CLUSTER SERVICE -> the service's task definition (arn, revision, image,
                                     secrets, environment, tags)
  moto.py put-image REPO TAG       -> an image pushed to ECR under TAG and its scan begun, as a
                                     push to a repository with scan on push does: {"digest": ...}
  moto.py scan-findings REPO TAG CRITICAL -> ECR's scan of REPO:TAG will report CRITICAL
                                     critical findings (moto's API for scan results)
  moto.py container-instance CLUSTER -> an EC2 instance registered as a container instance of a
                                     new ECS cluster: {"arn": ..., "instance": ...}
  moto.py stop INSTANCE_ID

The endpoint is $MOTO_URL; every call after `credentials` is signed with $AWS_ACCESS_KEY_ID.
"""

import hashlib
import json
import os
import sys
import urllib.request

import boto3

REGION = "us-east-1"


def client(service, **creds):
    return boto3.client(service, region_name=REGION, endpoint_url=os.environ["MOTO_URL"], **creds)


def credentials():
    # moto lets exactly INITIAL_NO_AUTH_ACTION_COUNT (3) calls through unsigned: these three.
    iam = client("iam", aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName="hello")
    key = iam.create_access_key(UserName="hello")["AccessKey"]
    iam.put_user_policy(
        UserName="hello",
        PolicyName="allow-all",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    print(json.dumps({"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))


def cluster(port, ips):
    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="127.0.0.0/24", AvailabilityZone="us-east-1a")
    subnet = subnet["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instances = {}
    for ip in ips:
        reservation = ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet, PrivateIpAddress=ip
        )
        instances[ip] = reservation["Instances"][0]["InstanceId"]
    elb = client("elb")
    elb.create_load_balancer(
        LoadBalancerName="hello-elb",
        Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstanceProtocol": "HTTP", "InstancePort": port}],
        AvailabilityZones=["us-east-1a"],
    )
    elb.register_instances_with_load_balancer(
        LoadBalancerName="hello-elb", Instances=[{"InstanceId": i} for i in instances.values()]
    )
    elbv2 = client("elbv2")
    group = elbv2.create_target_group(
        Name="hello-tg", Protocol="HTTP", Port=port, VpcId=vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": i, "Port": port} for i in instances.values()])
    print(json.dumps({"instances": instances, "elb": "hello-elb", "target_group": group}))


def role_credentials():
    """Temporary credentials of an allow-all role, as an instance profile would hand out."""
    iam = client("iam")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": iam.get_user(UserName="hello")["User"]["Arn"]}, "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName="hello-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    iam.put_role_policy(
        RoleName="hello-role",
        PolicyName="allow-all",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    creds = client("sts").assume_role(RoleArn=role["Arn"], RoleSessionName="node")["Credentials"]
    print(json.dumps({"key": creds["AccessKeyId"], "secret": creds["SecretAccessKey"],
                      "token": creds["SessionToken"]}))


def ecs_service(task_definition_file):
    """An ECR repository and an ECS service running the example task definition, registered
    as `aws ecs register-task-definition --cli-input-json` would."""
    ecs = client("ecs")
    ecs.create_cluster(clusterName="hello")
    task = ecs.register_task_definition(**json.load(open(task_definition_file)))["taskDefinition"]
    ecs.create_service(cluster="hello", serviceName="hello", taskDefinition=task["taskDefinitionArn"],
                       desiredCount=1)
    repo = client("ecr").create_repository(repositoryName="hello")["repository"]["repositoryUri"]
    print(json.dumps({"task_definition": task["taskDefinitionArn"], "repository": repo}))


def register_task(task_definition_file):
    task = client("ecs").register_task_definition(**json.load(open(task_definition_file)))
    print(json.dumps({"revision": task["taskDefinition"]["revision"]}))


def service_task(cluster, service):
    ecs = client("ecs")
    arn = ecs.describe_services(cluster=cluster, services=[service])["services"][0]["taskDefinition"]
    described = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
    task = described["taskDefinition"]
    print(json.dumps({"arn": arn, "revision": task["revision"],
                      "image": task["containerDefinitions"][0]["image"],
                      "secrets": task["containerDefinitions"][0].get("secrets", []),
                      "environment": task["containerDefinitions"][0].get("environment", []),
                      "ulimits": task["containerDefinitions"][0].get("ulimits", []),
                      "tags": described.get("tags", [])}))


def put_image(repository, tag):
    """What `docker push` and ECR's scan on push leave in the repository."""
    ecr = client("ecr")
    # A layer named after the tag: moto derives an image's digest from its layers' digests, so
    # each tag gets a digest of its own.
    layer = "sha256:" + hashlib.sha256(tag.encode()).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": layer},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1, "digest": layer}],
    }
    image = ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)["image"]
    ecr.start_image_scan(repositoryName=repository, imageId={"imageTag": tag})
    print(json.dumps({"digest": image["imageId"]["imageDigest"]}))


def scan_findings(repository, tag, critical):
    """The next scan result of REPO:TAG, through moto's API for it (moto-api/static)."""
    critical = int(critical)
    result = {
        "repositoryName": repository,
        "imageId": {"imageTag": tag},
        "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
        "imageScanFindings": {
            "findings": [
                {"name": f"CVE-2026-{1000 + i}", "severity": "CRITICAL", "uri": "https://example.invalid"}
                for i in range(critical)
            ],
            "findingSeverityCounts": {"CRITICAL": critical, "LOW": 1} if critical else {"LOW": 1},
        },
    }
    request = urllib.request.Request(
        os.environ["MOTO_URL"] + "/moto-api/static/ecr/scan-finding-results",
        data=json.dumps({"results": [result], "region": REGION}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request).read()
    print(json.dumps({"critical": critical}))


def container_instance(cluster):
    """As the ECS agent registers its instance, with the instance identity document."""
    ec2 = client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ecs = client("ecs")
    ecs.create_cluster(clusterName=cluster)
    document = {"instanceId": instance, "region": REGION, "imageId": image}
    arn = ecs.register_container_instance(cluster=cluster, instanceIdentityDocument=json.dumps(document))
    print(json.dumps({"arn": arn["containerInstance"]["containerInstanceArn"], "instance": instance}))


def stop(instance_id):
    client("ec2").stop_instances(InstanceIds=[instance_id])
    print(json.dumps({"stopped": instance_id}))


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "credentials":
        credentials()
    elif command == "cluster":
        cluster(int(args[0]), args[1:])
    elif command == "role-credentials":
        role_credentials()
    elif command == "ecs-service":
        ecs_service(args[0])
    elif command == "register-task":
        register_task(args[0])
    elif command == "service-task":
        service_task(args[0], args[1])
    elif command == "put-image":
        put_image(args[0], args[1])
    elif command == "scan-findings":
        scan_findings(args[0], args[1], args[2])
    elif command == "container-instance":
        container_instance(args[0])
    elif command == "stop":
        stop(args[0])
    else:
        sys.exit(f"unknown command {command}")
