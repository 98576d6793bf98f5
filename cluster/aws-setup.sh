#!/usr/bin/env bash
# One-time AWS set-up for cluster/aws.yaml, with the AWS CLI and your own credentials. Idempotent: rerun at will.
#
#   BUCKET=my-chorus-bucket SSH_CIDR=203.0.113.7/32 cluster/aws-setup.sh     # bucket, IAM, security group, ECR
#   cluster/aws-setup.sh push                                                # build, tag and push both images
#
# What it makes (names are fixed; cluster/aws.yaml refers to them):
#   s3://$BUCKET                 private (public access blocked), encrypted: Ray's storage_path for searches
#   IAM role + instance profile  chorus-ray-head:   S3 on $BUCKET only, ECR pull, launch/stop this cluster's workers
#                                chorus-ray-worker: S3 on $BUCKET only, ECR pull (Ray's default profile would go to
#                                the head only, and workers could not write checkpoints)
#   security group chorus-ray    in the default VPC: SSH from $SSH_CIDR only, all traffic between its own members;
#                                no Ray port (6379, 8265, 10001, ...) is open to anyone else
#   ECR repository chorus        images tagged <version>-cpu / <version>-gpu (pyproject.toml's version)
# It prints the security group id and the registry to put into cluster/aws.yaml (the lines marked EDIT).
set -euo pipefail
cd "$(dirname "$0")/.."

REGION="${REGION:-us-west-2}"      # EDIT: the region of cluster/aws.yaml
BUCKET="${BUCKET:-EDIT-BUCKET}"    # EDIT: a new, globally unique bucket name
SSH_CIDR="${SSH_CIDR:-EDIT}"       # EDIT: your public IPv4 address as a.b.c.d/32 (curl -s https://checkip.amazonaws.com)
VPC_ID="${VPC_ID:-}"               # optional: a VPC other than the default one
SG_NAME=chorus-ray
REPO_NAME=chorus

die() { echo "aws-setup: $*" >&2; exit 2; }
log() { echo "aws-setup: $*" >&2; }
version() { sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -1; }

check_cidr() {
    [[ "$SSH_CIDR" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$ ]] \
        || die "SSH_CIDR=$SSH_CIDR: give your IPv4 address as a.b.c.d/32"
    local bits="${BASH_REMATCH[5]}"
    ((bits >= 16 && bits <= 32)) || die "SSH_CIDR=$SSH_CIDR: refusing a range wider than /16 for SSH"
}

# --- push: build both images with the container user the AMI's ubuntu user matches, tag, push ----------------
if [[ "${1:-}" == push ]]; then
    ACCOUNT="$(aws sts get-caller-identity --query Account --output text)"
    REGISTRY="$ACCOUNT.dkr.ecr.$REGION.amazonaws.com"
    VERSION="$(version)"
    aws ecr get-login-password --region "$REGION" | docker login --username AWS --password-stdin "$REGISTRY"
    for flavour in cpu gpu; do
        IMAGE="$REGISTRY/$REPO_NAME:$VERSION-$flavour"
        flag=(); [[ $flavour == gpu ]] && flag=(--gpu)
        CHORUS_UID=1000 CHORUS_GID=1000 CHORUS_IMAGE="$IMAGE" docker/build.sh ${flag[@]+"${flag[@]}"}
        docker push "$IMAGE"
        log "pushed $IMAGE"
    done
    exit 0
fi
[[ $# -eq 0 ]] || die "unknown argument $1 (no argument: set up; push: build and push the images)"

[[ "$BUCKET" != *EDIT* ]] || die "set BUCKET=<a new bucket name> (see the top of $0)"
check_cidr

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# --- bucket ----------------------------------------------------------------------------------------------------
if aws s3api head-bucket --bucket "$BUCKET" --region "$REGION" >/dev/null 2>&1; then
    log "bucket $BUCKET exists"
else
    location=(); [[ "$REGION" == us-east-1 ]] || location=(--create-bucket-configuration "LocationConstraint=$REGION")
    aws s3api create-bucket --bucket "$BUCKET" --region "$REGION" ${location[@]+"${location[@]}"} >/dev/null
    log "created bucket $BUCKET"
fi
aws s3api put-public-access-block --bucket "$BUCKET" --region "$REGION" --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
aws s3api put-bucket-encryption --bucket "$BUCKET" --region "$REGION" --server-side-encryption-configuration \
    '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'

# --- IAM: one role and instance profile each for the head and the workers --------------------------------------
cat >"$TMP/trust.json" <<'EOF'
{"Version": "2012-10-17",
 "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
EOF
sed "s/EDIT-BUCKET/$BUCKET/g" cluster/aws-iam-policy.json >"$TMP/storage-policy.json"
for role in chorus-ray-head chorus-ray-worker; do
    if ! aws iam get-role --role-name "$role" >/dev/null 2>&1; then
        aws iam create-role --role-name "$role" --assume-role-policy-document "file://$TMP/trust.json" >/dev/null
        log "created role $role"
    fi
    aws iam put-role-policy --role-name "$role" --policy-name chorus-storage \
        --policy-document "file://$TMP/storage-policy.json"
    if ! aws iam get-instance-profile --instance-profile-name "$role" >/dev/null 2>&1; then
        aws iam create-instance-profile --instance-profile-name "$role" >/dev/null
        aws iam add-role-to-instance-profile --instance-profile-name "$role" --role-name "$role"
        log "created instance profile $role"
    fi
done
aws iam put-role-policy --role-name chorus-ray-head --policy-name chorus-autoscaler \
    --policy-document "file://cluster/aws-head-policy.json"

# --- security group: SSH from you, everything between the cluster's own nodes, nothing else --------------------
if [[ -z "$VPC_ID" ]]; then
    VPC_ID="$(aws ec2 describe-vpcs --region "$REGION" --filters Name=is-default,Values=true \
        --query 'Vpcs[0].VpcId' --output text)"
    [[ "$VPC_ID" == vpc-* ]] || die "no default VPC in $REGION: set VPC_ID"
fi
SG_ID="$(aws ec2 describe-security-groups --region "$REGION" \
    --filters "Name=group-name,Values=$SG_NAME" "Name=vpc-id,Values=$VPC_ID" \
    --query 'SecurityGroups[0].GroupId' --output text)"
if [[ "$SG_ID" != sg-* ]]; then
    SG_ID="$(aws ec2 create-security-group --region "$REGION" --group-name "$SG_NAME" --vpc-id "$VPC_ID" \
        --description "chorus Ray cluster: SSH from one CIDR, all traffic within the group" \
        --query GroupId --output text)"
    log "created security group $SG_ID"
fi
RULES='[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "'"$SSH_CIDR"'", "Description": "SSH (ray up, ray dashboard tunnel)"}]},
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "'"$SG_ID"'", "Description": "Ray nodes"}]}]'
if ! out="$(aws ec2 authorize-security-group-ingress --region "$REGION" --group-id "$SG_ID" \
        --ip-permissions "$RULES" 2>&1)"; then
    [[ "$out" == *InvalidPermission.Duplicate* ]] || { echo "$out" >&2; exit 1; }
    log "security group rules already present"
fi

# --- ECR repository ----------------------------------------------------------------------------------------------
if ! aws ecr describe-repositories --region "$REGION" --repository-names "$REPO_NAME" >/dev/null 2>&1; then
    aws ecr create-repository --region "$REGION" --repository-name "$REPO_NAME" \
        --image-scanning-configuration scanOnPush=true >/dev/null
    log "created ECR repository $REPO_NAME"
fi
ACCOUNT="$(aws sts get-caller-identity --query Account --output text)"

cat <<EOF
Done. In cluster/aws.yaml, set:
  SecurityGroupIds:  [$SG_ID]
  registry:          $ACCOUNT.dkr.ecr.$REGION.amazonaws.com   (docker.image, gpu_worker's worker_image, initialization_commands)
Then push the images (cluster/aws-setup.sh push) and search with
  --set storage_path=s3://$BUCKET/ray_results
EOF
