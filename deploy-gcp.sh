#!/usr/bin/env bash
# Deploy the agent platform to a Google Cloud project in one command (README, "Deploy").
#
# It checks gcloud's login and the project, enables the APIs, creates what is missing
# (every resource is described before it is created), builds both images with Cloud
# Build for linux/amd64, deploys the runner job and then the API service, schedules
# reconciliation, prints the service URL and ends with a smoke test. Run it again to
# roll out new code: a second run creates nothing and deploys a new revision.
#
#   ./deploy-gcp.sh --project my-project --anthropic-key-file ~/anthropic.key
#   ./deploy-gcp.sh --project my-project --dry-run     # print every command, run none
#   ./deploy-gcp.sh --help
#
# terraform/ creates the same resources, and cloudbuild.yaml rolls out new images;
# tests/deploy checks that the three agree.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	cat <<'EOF'
Usage: ./deploy-gcp.sh [options]

Settings (a flag wins over its environment variable, which wins over the default):
  --project ID              GOOGLE_CLOUD_PROJECT     the project (required)
  --region REGION           REGION                   us-central1
  --firestore-location LOC  FIRESTORE_LOCATION       the region (used only on creation)
  --service NAME            SERVICE_NAME             agent-api (the Cloud Run service)
  --job NAME                JOB_NAME                 agent-runner (the Cloud Run job)
  --repository NAME         REPOSITORY               agent-platform (Artifact Registry)
  --scheduler-job NAME      SCHEDULER_JOB            agent-reconcile (Cloud Scheduler)
  --auth-mode MODE          AUTH_MODE                firebase,apikey (or firebase, apikey)
  --max-instances N         MAX_INSTANCES            10 (the service's ceiling)
  --job-cpu CPU             JOB_CPU                  2 (per task execution; Cloud Run needs 2
                                                     CPUs for more than 4 GiB)
  --job-memory SIZE         JOB_MEMORY               the largest task plus the runner, from
                                                     api/config.py (6656Mi); no less is accepted
  --tag TAG                 IMAGE_TAG                <git commit>-<UTC time>

The Anthropic API key, stored in Secret Manager; never pass it as an argument:
  --anthropic-key-file FILE ANTHROPIC_API_KEY_FILE   read it from FILE, or from stdin with '-'.
      Needed on the first run; later, a key that differs from the stored one becomes the
      secret's new version (that is how you rotate it). Asked for on a terminal if missing.

The task-token signing key is generated on the first run, also into Secret Manager:
  --rotate-token-key                                 generate a new one (tokens of tasks
      running at that moment stop working: rotate when none runs)

Smoke test (always GET /health):
  --smoke-task                                       also run a tiny code task
  --smoke-api-key-file FILE SMOKE_API_KEY_FILE       an API key (ak_...) for that task

  --dry-run                 print every command and run none
  -h, --help                this text
EOF
}

# -- Settings -------------------------------------------------------------------------
# Names and defaults match terraform/variables.tf and cloudbuild.yaml's substitutions.
PROJECT=${GOOGLE_CLOUD_PROJECT:-}
REGION=${REGION:-us-central1}
FIRESTORE_LOCATION=${FIRESTORE_LOCATION:-}
SERVICE_NAME=${SERVICE_NAME:-agent-api}
JOB_NAME=${JOB_NAME:-agent-runner}
REPOSITORY=${REPOSITORY:-agent-platform}
SCHEDULER_JOB=${SCHEDULER_JOB:-agent-reconcile}
AUTH_MODE=${AUTH_MODE:-firebase,apikey}
MAX_INSTANCES=${MAX_INSTANCES:-10}
JOB_CPU=${JOB_CPU:-2}
JOB_MEMORY=${JOB_MEMORY:-}
IMAGE_TAG=${IMAGE_TAG:-}
ANTHROPIC_API_KEY_FILE=${ANTHROPIC_API_KEY_FILE:-}
SMOKE_API_KEY_FILE=${SMOKE_API_KEY_FILE:-}
SMOKE_TASK=false
ROTATE_TOKEN_KEY=false
DRY_RUN=false

# Fixed names: the service accounts, the secrets, the custom role.
API_SA_ID="agent-api"
RUNNER_SA_ID="agent-runner"
SCHEDULER_SA_ID="agent-scheduler"
BUILDER_SA_ID="agent-builder"
ANTHROPIC_SECRET="anthropic-api-key"
TOKEN_SECRET="task-token-key"
LAUNCHER_ROLE="agentTaskLauncher"
# What the API does with the job (api/adapters/executors/cloudrun.py): RunJob with
# overrides, GetExecution, CancelExecution. Narrower than roles/run.developer, which
# could also update or delete the job.
LAUNCHER_PERMISSIONS=run.jobs.run,run.jobs.runWithOverrides,run.executions.get,run.executions.cancel

# Sizes and limits, matched to the app (tests/deploy checks each against its source).
# Concurrency = gunicorn's threads (gunicorn.conf.py): Cloud Run sends an instance no
# more requests than it has threads, so no request waits inside gunicorn behind held
# ones (?wait, SSE; at most MAX_HELD_REQUESTS = 12 of them), and the autoscaler adds
# instances instead.
API_CONCURRENCY=16
API_CPU=1
API_MEMORY=1Gi
# Seconds: ?wait holds a request for 60 s at most, an SSE stream lasts as long as
# its task (up to an hour).
API_REQUEST_TIMEOUT=3600
# The longest task (MAX_TIMEOUT_SECONDS 3600) plus the runner's overhead
# (RUNNER_OVERHEAD_SECONDS 30); each execution is started with its own task's timeout.
JOB_TASK_TIMEOUT=3630s
# One retry of an attempt that died (the runner exits non-zero only when it could not
# report); its claim is idempotent, so a retry never yields a second result.
JOB_MAX_RETRIES=1
RECONCILE_PATH=/internal/v1/reconcile
RECONCILE_SCHEDULE='* * * * *'
# Firestore deletes these records once their field has passed: "collection.field".
TTLS=(idempotency.expireAt uploads.expireAt admissionDaily.expireAt tasks.expireAt events.expireAt)
# The files bucket (DESIGN section 11): uploads live a day (their records too, by the
# TTL above); a superseded conversation snapshot gets a Custom-Time from the API, which
# deletes it, and this rule is the backstop a day later. A task's files live
# TASK_RETENTION_DAYS (30, api/config.py), as its records do (the TTLs on tasks and
# events); a piece of a file (`<name>.part<i>`, at most 32) older than a day was left
# by an upload that was cancelled or crashed before it was joined.
FILES_LIFECYCLE='{"rule": [
  {"action": {"type": "Delete"}, "condition": {"age": 1, "matchesPrefix": ["uploads/"]}},
  {"action": {"type": "Delete"}, "condition": {"daysSinceCustomTime": 1, "matchesPrefix": ["conversations/"]}},
  {"action": {"type": "Delete"}, "condition": {"age": 30, "matchesPrefix": ["tasks/"]}},
  {"action": {"type": "Delete"}, "condition": {"age": 1, "matchesSuffix": [".part0", ".part1", ".part2", ".part3", ".part4", ".part5", ".part6", ".part7", ".part8", ".part9", ".part10", ".part11", ".part12", ".part13", ".part14", ".part15", ".part16", ".part17", ".part18", ".part19", ".part20", ".part21", ".part22", ".part23", ".part24", ".part25", ".part26", ".part27", ".part28", ".part29", ".part30", ".part31"]}}
]}'
REQUIRED_APIS=(
	artifactregistry.googleapis.com
	cloudbuild.googleapis.com
	cloudresourcemanager.googleapis.com
	cloudscheduler.googleapis.com
	firestore.googleapis.com
	iam.googleapis.com
	run.googleapis.com
	secretmanager.googleapis.com
	storage.googleapis.com
)

# -- Output and running commands ------------------------------------------------------

say() { printf '%s\n' "$*" >&2; }
die() {
	printf 'deploy-gcp.sh: %s\n' "$*" >&2
	exit 1
}
# The command as it would be typed, after a '+', like `set -x`.
show() {
	printf '+' >&2
	printf ' %q' "$@" >&2
	printf '\n' >&2
}

# run CMD...: print the command, then run it (not in a dry run).
run() {
	show "$@"
	if [[ $DRY_RUN == true ]]; then return 0; fi
	"$@"
}

# run_with_input VALUE CMD...: run CMD with VALUE on its standard input. VALUE (a
# secret) goes through a pipe from the shell's builtin printf: it is never part of any
# process's command line.
run_with_input() {
	local value=$1
	shift
	show "$@"
	if [[ $DRY_RUN == true ]]; then return 0; fi
	printf '%s' "$value" | "$@"
}

# query CMD...: print a read-only command, run it and pass its output on. A dry run
# runs nothing and outputs nothing, as if the project were empty.
query() {
	show "$@"
	if [[ $DRY_RUN == true ]]; then return 0; fi
	"$@"
}

# probe CMD...: like query, for a read whose "not found" is an answer: the command's
# errors are not shown, and a failure outputs nothing.
probe() {
	show "$@"
	if [[ $DRY_RUN == true ]]; then return 0; fi
	"$@" 2>/dev/null || true
}

# exists CMD...: whether a describe command finds its resource (false in a dry run).
exists() {
	show "$@"
	if [[ $DRY_RUN == true ]]; then return 1; fi
	"$@" >/dev/null 2>&1
}

# Every gcloud call names the project and never prompts.
gcloud_run() { run gcloud "$@" --project="$PROJECT" --quiet; }
gcloud_query() { query gcloud "$@" --project="$PROJECT" --quiet; }
gcloud_probe() { probe gcloud "$@" --project="$PROJECT" --quiet; }
gcloud_exists() { exists gcloud "$@" --project="$PROJECT" --quiet; }

# -- Arguments ------------------------------------------------------------------------

need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"; }

parse_args() {
	while [[ $# -gt 0 ]]; do
		case $1 in
		--project) need_value "$@"; PROJECT=$2; shift ;;
		--region) need_value "$@"; REGION=$2; shift ;;
		--firestore-location) need_value "$@"; FIRESTORE_LOCATION=$2; shift ;;
		--service) need_value "$@"; SERVICE_NAME=$2; shift ;;
		--job) need_value "$@"; JOB_NAME=$2; shift ;;
		--repository) need_value "$@"; REPOSITORY=$2; shift ;;
		--scheduler-job) need_value "$@"; SCHEDULER_JOB=$2; shift ;;
		--auth-mode) need_value "$@"; AUTH_MODE=$2; shift ;;
		--max-instances) need_value "$@"; MAX_INSTANCES=$2; shift ;;
		--job-cpu) need_value "$@"; JOB_CPU=$2; shift ;;
		--job-memory) need_value "$@"; JOB_MEMORY=$2; shift ;;
		--tag) need_value "$@"; IMAGE_TAG=$2; shift ;;
		--anthropic-key-file) need_value "$@"; ANTHROPIC_API_KEY_FILE=$2; shift ;;
		--smoke-api-key-file) need_value "$@"; SMOKE_API_KEY_FILE=$2; shift ;;
		--smoke-task) SMOKE_TASK=true ;;
		--rotate-token-key) ROTATE_TOKEN_KEY=true ;;
		--dry-run) DRY_RUN=true ;;
		-h | --help) usage; exit 0 ;;
		--anthropic-key | --anthropic-api-key | --api-key)
			die "$1: a key on the command line is visible to every process on this machine; use --anthropic-key-file FILE (or - for stdin)" ;;
		*) die "unknown argument: $1 (see --help)" ;;
		esac
		shift
	done
}

# The memory one execution needs, in MiB: the largest task's memory, its tmpfs disk
# (memory on Cloud Run) and the runner itself, as api/config.py sets them.
JOB_MEMORY_PY='
import ast, sys
sizes = {}
for node in ast.parse(open(sys.argv[1]).read()).body:
    if isinstance(node, ast.Assign):
        for target, value in zip(node.targets[-1].elts if isinstance(node.targets[-1], ast.Tuple) else node.targets,
                                 node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]):
            if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
                sizes[target.id] = value.value
print(sizes["MAX_MEMORY_MB"] + sizes["TASK_DISK_MB"] + sizes["RUNNER_RESERVE_MB"])
'
job_memory_mb() { python3 -c "$JOB_MEMORY_PY" "$ROOT/api/config.py"; }

validate_settings() {
	command -v python3 >/dev/null || die "python3 is needed (it reads api/config.py and firestore.indexes.json)"
	[[ -n $PROJECT ]] || die "no project: pass --project ID or set GOOGLE_CLOUD_PROJECT"
	case $AUTH_MODE in
	firebase | apikey | firebase,apikey | apikey,firebase) ;;
	dev) die "AUTH_MODE=dev trusts the X-User-Id header and the API refuses it on Cloud Run: use firebase, apikey or firebase,apikey" ;;
	*) die "--auth-mode must be firebase, apikey or firebase,apikey, not '$AUTH_MODE'" ;;
	esac
	[[ $MAX_INSTANCES =~ ^[1-9][0-9]*$ ]] || die "--max-instances must be a positive integer"
	if [[ $SMOKE_TASK == true && -z $SMOKE_API_KEY_FILE ]]; then
		die "--smoke-task needs --smoke-api-key-file FILE (an API key the deployed API accepts)"
	fi
	if [[ -n $ANTHROPIC_API_KEY_FILE && $ANTHROPIC_API_KEY_FILE != - && ! -r $ANTHROPIC_API_KEY_FILE ]]; then
		die "cannot read the Anthropic key file $ANTHROPIC_API_KEY_FILE"
	fi
	FIRESTORE_LOCATION=${FIRESTORE_LOCATION:-$REGION}
	local needed
	needed=$(job_memory_mb)
	JOB_MEMORY=${JOB_MEMORY:-${needed}Mi}
	[[ $JOB_MEMORY =~ ^([0-9]+)(Mi|Gi)$ ]] || die "--job-memory must be like 6656Mi or 8Gi, not '$JOB_MEMORY'"
	local given=${BASH_REMATCH[1]}
	if [[ ${BASH_REMATCH[2]} == Gi ]]; then given=$((given * 1024)); fi
	((given >= needed)) || die "--job-memory $JOB_MEMORY cannot hold the largest task: it needs ${needed}Mi (MAX_MEMORY_MB + TASK_DISK_MB + RUNNER_RESERVE_MB in api/config.py)"
	if [[ -z $IMAGE_TAG ]]; then
		local commit
		commit=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo manual)
		IMAGE_TAG="$commit-$(date -u +%Y%m%d%H%M%S)"
	fi
	API_SA="$API_SA_ID@$PROJECT.iam.gserviceaccount.com"
	RUNNER_SA="$RUNNER_SA_ID@$PROJECT.iam.gserviceaccount.com"
	SCHEDULER_SA="$SCHEDULER_SA_ID@$PROJECT.iam.gserviceaccount.com"
	BUILDER_SA="$BUILDER_SA_ID@$PROJECT.iam.gserviceaccount.com"
	BUILD_BUCKET="$PROJECT-agent-builds"
	FILES_BUCKET="$PROJECT-agent-files"
	IMAGE_BASE="$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY"
	API_IMAGE="$IMAGE_BASE/api:$IMAGE_TAG"
	RUNNER_IMAGE="$IMAGE_BASE/runner:$IMAGE_TAG"
	JOB_RESOURCE="projects/$PROJECT/locations/$REGION/jobs/$JOB_NAME"
}

# The Anthropic key, read once from the file or stdin named (or a terminal prompt).
ANTHROPIC_KEY=
read_anthropic_key() {
	if [[ -n $ANTHROPIC_KEY ]]; then return 0; fi
	if [[ $ANTHROPIC_API_KEY_FILE == - ]]; then
		ANTHROPIC_KEY=$(cat)
	elif [[ -n $ANTHROPIC_API_KEY_FILE ]]; then
		ANTHROPIC_KEY=$(<"$ANTHROPIC_API_KEY_FILE")
	elif [[ -t 0 ]]; then
		read -rsp 'Anthropic API key (not echoed): ' ANTHROPIC_KEY
		printf '\n' >&2
	else
		die "the secret $ANTHROPIC_SECRET has no version yet: give the key with --anthropic-key-file FILE (or - for stdin)"
	fi
	# Trailing newlines and surrounding blanks are never part of a key.
	ANTHROPIC_KEY=$(printf '%s' "$ANTHROPIC_KEY" | tr -d '[:space:]')
	[[ -n $ANTHROPIC_KEY ]] || die "the Anthropic key given is empty"
}

# -- Steps ----------------------------------------------------------------------------

check_tools() {
	# A dry run runs neither.
	if [[ $DRY_RUN == true ]]; then return 0; fi
	command -v gcloud >/dev/null || die "gcloud is not installed: https://cloud.google.com/sdk/docs/install"
	command -v curl >/dev/null || die "curl is needed for the smoke test"
}

PROJECT_NUMBER=
check_auth_and_project() {
	local account number
	# Any credential gcloud can use: a login, a service account, or an access token
	# (auth/access_token_file, as CI gives one). The token itself goes nowhere.
	if [[ $DRY_RUN == false ]] && ! gcloud auth print-access-token >/dev/null 2>&1; then
		die "gcloud has no credentials: run 'gcloud auth login' first"
	fi
	account=$(query gcloud config get account 2>/dev/null || true)
	if ! number=$(gcloud_query projects describe "$PROJECT" --format='value(projectNumber)'); then
		die "project $PROJECT was not found, or $account cannot see it"
	fi
	say "Deploying to project $PROJECT${number:+ ($number)} in $REGION as ${account:-<the active account>}"
	PROJECT_NUMBER=${number:-PROJECT_NUMBER}
	# Cloud Run's deterministic URL, known before the service exists: the first
	# revision already gets it as PUBLIC_URL (Terraform computes the same).
	# https://cloud.google.com/run/docs/triggering/https-request#deterministic
	SERVICE_URL="https://$SERVICE_NAME-$PROJECT_NUMBER.$REGION.run.app"
}

enable_apis() {
	local enabled api
	local -a missing=()
	enabled=$(gcloud_query services list --enabled --format='value(config.name)')
	for api in "${REQUIRED_APIS[@]}"; do
		if ! grep -Fxq -- "$api" <<<"$enabled"; then missing+=("$api"); fi
	done
	if [[ ${#missing[@]} -eq 0 ]]; then
		say "exists: every API is enabled"
		return 0
	fi
	gcloud_run services enable "${missing[@]}"
}

ensure_repository() {
	if gcloud_exists artifacts repositories describe "$REPOSITORY" --location="$REGION"; then
		say "exists: Artifact Registry repository $REPOSITORY"
		return 0
	fi
	gcloud_run artifacts repositories create "$REPOSITORY" --location="$REGION" \
		--repository-format=docker --description="Agent platform images (api, runner)"
}

# Cloud Build's source uploads, in a bucket of our own: the builder account reads only
# this one. Uploads are deleted after a week.
ensure_build_bucket() {
	if gcloud_exists storage buckets describe "gs://$BUILD_BUCKET"; then
		say "exists: bucket gs://$BUILD_BUCKET"
		return 0
	fi
	gcloud_run storage buckets create "gs://$BUILD_BUCKET" --location="$REGION" \
		--uniform-bucket-level-access --public-access-prevention
	local lifecycle="$TMP_DIR/lifecycle.json"
	printf '%s\n' '{"rule": [{"action": {"type": "Delete"}, "condition": {"age": 7}}]}' >"$lifecycle"
	gcloud_run storage buckets update "gs://$BUILD_BUCKET" --lifecycle-file="$lifecycle"
}

# Task files, uploads and conversation workspaces (DESIGN section 11): private, with
# the lifecycle rules of FILES_LIFECYCLE. Only the API's account reaches it.
ensure_files_bucket() {
	if gcloud_exists storage buckets describe "gs://$FILES_BUCKET"; then
		say "exists: bucket gs://$FILES_BUCKET"
		return 0
	fi
	gcloud_run storage buckets create "gs://$FILES_BUCKET" --location="$REGION" \
		--uniform-bucket-level-access --public-access-prevention
	local lifecycle="$TMP_DIR/files-lifecycle.json"
	printf '%s\n' "$FILES_LIFECYCLE" >"$lifecycle"
	gcloud_run storage buckets update "gs://$FILES_BUCKET" --lifecycle-file="$lifecycle"
}

# Prints "GROUP SCOPE FIELD_CONFIG..." for each index of firestore.indexes.json that
# is not among the existing ones (gcloud's JSON, the second argument). The index on
# __name__ that Firestore adds by itself, in the last field's direction, is implied.
MISSING_INDEXES_PY='
import json, sys

def key(group, scope, fields):
    fields = [(f["fieldPath"], f.get("order", "").upper()) for f in fields]
    if fields and fields[-1][0] != "__name__":
        fields.append(("__name__", fields[-1][1]))
    return group, scope.upper(), tuple(fields)

wanted = json.load(open(sys.argv[1]))["indexes"]
existing = json.loads(sys.argv[2] or "[]")
have = {
    key(i["name"].split("/collectionGroups/")[1].split("/")[0], i.get("queryScope", ""), i["fields"])
    for i in existing
}
for index in wanted:
    if key(index["collectionGroup"], index["queryScope"], index["fields"]) in have:
        continue
    fields = index["fields"]
    if len(fields) > 1 and fields[-1]["fieldPath"] == "__name__" and fields[-1]["order"] == fields[-2]["order"]:
        fields = fields[:-1]
    configs = ["field-path=%s,order=%s" % (f["fieldPath"], f["order"].lower()) for f in fields]
    print(index["collectionGroup"], index["queryScope"].lower().replace("_", "-"), *configs)
'

ensure_firestore() {
	if gcloud_exists firestore databases describe --database="(default)"; then
		say "exists: Firestore database (default)"
	else
		gcloud_run firestore databases create --database="(default)" \
			--location="$FIRESTORE_LOCATION" --type=firestore-native
	fi

	# The composite indexes the list queries need, declared in firestore.indexes.json.
	local existing missing line
	local -a lines=() words args
	existing=$(gcloud_query firestore indexes composite list --database="(default)" --format=json)
	missing=$(python3 -c "$MISSING_INDEXES_PY" "$ROOT/firestore.indexes.json" "$existing")
	while IFS= read -r line; do
		if [[ -n $line ]]; then lines+=("$line"); fi
	done <<<"$missing"
	if [[ ${#lines[@]} -eq 0 ]]; then say "exists: every Firestore index"; fi
	for line in ${lines[@]+"${lines[@]}"}; do
		read -ra words <<<"$line"
		args=(--collection-group="${words[0]}" --query-scope="${words[1]}")
		for field in "${words[@]:2}"; do args+=(--field-config="$field"); done
		# --async: an index builds in the background, in minutes on an empty database.
		gcloud_run firestore indexes composite create --database="(default)" "${args[@]}" --async
	done

	# Expiring records (idempotency keys, uploads) are deleted by Firestore's TTL.
	local ttls ttl group field
	ttls=$(gcloud_query firestore fields ttls list --database="(default)" --format='value(name)')
	for ttl in "${TTLS[@]}"; do
		group=${ttl%%.*} field=${ttl#*.}
		if grep -q "/collectionGroups/$group/fields/$field\$" <<<"$ttls"; then
			say "exists: TTL on $ttl"
		else
			gcloud_run firestore fields ttls update "$field" --collection-group="$group" \
				--database="(default)" --enable-ttl --async
		fi
	done
}

ACCOUNTS=
ensure_service_account() {
	local id=$1 description=$2
	if grep -Fxq "$id@$PROJECT.iam.gserviceaccount.com" <<<"$ACCOUNTS"; then
		say "exists: service account $id"
		return 0
	fi
	gcloud_run iam service-accounts create "$id" --display-name="$id" --description="$description"
}

ensure_service_accounts() {
	# One list describes all four (gcloud starts in about a second).
	ACCOUNTS=$(gcloud_query iam service-accounts list --format='value(email)')
	ensure_service_account "$API_SA_ID" "The agent platform's API (Cloud Run service)"
	ensure_service_account "$RUNNER_SA_ID" "Task runner (Cloud Run job): holds no role at all"
	ensure_service_account "$SCHEDULER_SA_ID" "Cloud Scheduler: calls the API's reconcile endpoint"
	ensure_service_account "$BUILDER_SA_ID" "Cloud Build: builds and rolls out the images"
}

ensure_launcher_role() {
	if gcloud_exists iam roles describe "$LAUNCHER_ROLE"; then
		# A deleted custom role keeps its id for a while (README, "Tear down"): revive it.
		if [[ $(gcloud_probe iam roles describe "$LAUNCHER_ROLE" --format='value(deleted)') == True ]]; then
			gcloud_run iam roles undelete "$LAUNCHER_ROLE"
		else
			say "exists: custom role $LAUNCHER_ROLE"
		fi
		return 0
	fi
	gcloud_run iam roles create "$LAUNCHER_ROLE" --title="Agent task launcher" \
		--description="Run the runner job with overrides; get and cancel its executions" \
		--permissions="$LAUNCHER_PERMISSIONS" --stage=GA
}

ensure_secret() {
	if gcloud_exists secrets describe "$1"; then
		say "exists: secret $1"
		return 0
	fi
	gcloud_run secrets create "$1" --replication-policy=automatic
}

has_enabled_version() {
	[[ -n $(gcloud_query secrets versions list "$1" --filter=state:ENABLED --limit=1 --format='value(name)') ]]
}

ensure_secrets() {
	ensure_secret "$ANTHROPIC_SECRET"
	if has_enabled_version "$ANTHROPIC_SECRET"; then
		if [[ -n $ANTHROPIC_API_KEY_FILE && $DRY_RUN == false ]]; then
			read_anthropic_key
			local current
			current=$(gcloud_query secrets versions access latest --secret="$ANTHROPIC_SECRET")
			if [[ $current == "$ANTHROPIC_KEY" ]]; then
				say "exists: $ANTHROPIC_SECRET holds this key already"
			else
				say "rotating: the key given becomes $ANTHROPIC_SECRET's new version"
				run_with_input "$ANTHROPIC_KEY" gcloud secrets versions add "$ANTHROPIC_SECRET" \
					--data-file=- --project="$PROJECT" --quiet
			fi
		else
			say "exists: $ANTHROPIC_SECRET has a version"
		fi
	else
		[[ $DRY_RUN == true ]] || read_anthropic_key
		run_with_input "$ANTHROPIC_KEY" gcloud secrets versions add "$ANTHROPIC_SECRET" \
			--data-file=- --project="$PROJECT" --quiet
	fi
	ANTHROPIC_KEY=

	ensure_secret "$TOKEN_SECRET"
	if [[ $ROTATE_TOKEN_KEY == false ]] && has_enabled_version "$TOKEN_SECRET"; then
		say "exists: $TOKEN_SECRET has a version"
	else
		# 32 random bytes, generated here and piped to Secret Manager. The deployment
		# below starts new instances, which read the latest version.
		local token_key=
		[[ $DRY_RUN == true ]] || token_key=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
		run_with_input "$token_key" gcloud secrets versions add "$TOKEN_SECRET" \
			--data-file=- --project="$PROJECT" --quiet
	fi
}

# Whether an IAM policy (gcloud's JSON, on stdin) binds ROLE to MEMBER.
HAS_BINDING_PY='
import json, sys
text = sys.stdin.read().strip()
policy = json.loads(text) if text else {}
sys.exit(0 if any(
    b.get("role") == sys.argv[1] and sys.argv[2] in b.get("members", []) and not b.get("condition")
    for b in policy.get("bindings", [])
) else 1)
'

# grant "GROUP" RESOURCE MEMBER ROLE [FLAG...]: bind ROLE to MEMBER on one resource
# unless it is bound already. GROUP is the gcloud command group ("secrets", "run jobs").
# --condition=None: a policy that already holds a conditional binding (anyone's) makes
# gcloud refuse an unconditional one without it in non-interactive mode. `run jobs`
# has no --condition flag; a job's policy is ours alone.
grant() {
	local group resource=$1 member=$2 role=$3 key
	local -a condition=(--condition=None)
	read -ra group <<<"$4"
	shift 4
	if [[ ${group[*]} == "run jobs" ]]; then condition=(); fi
	# Each policy is read once per run (until it changes), not once per grant.
	key="${group[*]}|$resource"
	if [[ $key != "$POLICY_KEY" ]]; then
		POLICY=$(gcloud_query "${group[@]}" get-iam-policy "$resource" "$@" --format=json)
		POLICY_KEY=$key
	fi
	if python3 -c "$HAS_BINDING_PY" "$role" "$member" <<<"$POLICY"; then
		say "exists: $role for $member on $resource"
		return 0
	fi
	gcloud_run "${group[@]}" add-iam-policy-binding "$resource" "$@" \
		--member="$member" --role="$role" ${condition[@]+"${condition[@]}"}
	POLICY_KEY=
}
POLICY="" POLICY_KEY=""

# Each account gets exactly what it uses, on the narrowest resource that grants it.
# The runner's account gets nothing at all.
grant_foundation_roles() {
	# The project: api uses Firestore (a database-level grant needs IAM conditions; the
	# project is the narrowest plain scope), the builder writes its build logs.
	grant "$PROJECT" "serviceAccount:$API_SA" roles/datastore.user projects
	grant "$PROJECT" "serviceAccount:$BUILDER_SA" roles/logging.logWriter projects
	# api: its two secrets, and acting as the runner for RunJob; the builder deploys as
	# api and runner (cloudbuild.yaml).
	grant "$ANTHROPIC_SECRET" "serviceAccount:$API_SA" roles/secretmanager.secretAccessor secrets
	grant "$TOKEN_SECRET" "serviceAccount:$API_SA" roles/secretmanager.secretAccessor secrets
	grant "$RUNNER_SA" "serviceAccount:$API_SA" roles/iam.serviceAccountUser "iam service-accounts"
	grant "$RUNNER_SA" "serviceAccount:$BUILDER_SA" roles/iam.serviceAccountUser "iam service-accounts"
	grant "$API_SA" "serviceAccount:$BUILDER_SA" roles/iam.serviceAccountUser "iam service-accounts"
	# api: the files bucket's objects, that bucket only (the runner moves bytes through
	# the API, never with a credential of its own).
	grant "gs://$FILES_BUCKET" "serviceAccount:$API_SA" roles/storage.objectAdmin "storage buckets"
	# builder: push its images, read its uploads.
	grant "$REPOSITORY" "serviceAccount:$BUILDER_SA" roles/artifactregistry.writer \
		"artifacts repositories" --location="$REGION"
	grant "gs://$BUILD_BUCKET" "serviceAccount:$BUILDER_SA" roles/storage.objectViewer \
		"storage buckets"
}

build_images() {
	local config="$TMP_DIR/cloudbuild-images.yaml"
	cat >"$config" <<EOF
# Written by deploy-gcp.sh: build both images for linux/amd64 and push them.
steps:
  - id: api
    name: gcr.io/cloud-builders/docker
    env: [DOCKER_BUILDKIT=1]
    args: [build, --platform=linux/amd64, --file=api/Dockerfile, --tag=$API_IMAGE, .]
  - id: runner
    name: gcr.io/cloud-builders/docker
    env: [DOCKER_BUILDKIT=1]
    waitFor: ['-']
    args: [build, --platform=linux/amd64, --file=job-runner/Dockerfile, --tag=$RUNNER_IMAGE, .]
images: [$API_IMAGE, $RUNNER_IMAGE]
options:
  logging: CLOUD_LOGGING_ONLY
EOF
	say "Cloud Build config ($config):"
	sed 's/^/    /' "$config" >&2
	# beta: only it streams the log of a CLOUD_LOGGING_ONLY build (GA prints a hint).
	gcloud_run beta builds submit "$ROOT" --config="$config" --region="$REGION" \
		--service-account="projects/$PROJECT/serviceAccounts/$BUILDER_SA" \
		--gcs-source-staging-dir="gs://$BUILD_BUCKET/source"
}

# `run jobs deploy` and `run deploy` create the job and the service, or roll out a new
# image onto them: no describe first.
deploy_job() {
	# No secrets and no environment (--clear-env-vars): the API passes TASK_ID,
	# TASK_TOKEN and API_URL to each execution as overrides, and the runner holds
	# nothing else. Jobs run only in the second-generation execution environment;
	# --self-check below proves a sandbox backend works there (ADR 0012).
	gcloud_run run jobs deploy "$JOB_NAME" --image="$RUNNER_IMAGE" --region="$REGION" \
		--service-account="$RUNNER_SA" --clear-env-vars \
		--tasks=1 --max-retries="$JOB_MAX_RETRIES" --task-timeout="$JOB_TASK_TIMEOUT" \
		--cpu="$JOB_CPU" --memory="$JOB_MEMORY"
	grant "$JOB_NAME" "serviceAccount:$API_SA" "projects/$PROJECT/roles/$LAUNCHER_ROLE" \
		"run jobs" --region="$REGION"
	grant "$JOB_NAME" "serviceAccount:$BUILDER_SA" roles/run.developer \
		"run jobs" --region="$REGION"
	self_check_job
}

# One execution of the new job with --self-check (job_runner/self_check.py): every
# sandbox backend is probed there, and the one SANDBOX=auto picks must start a program
# with its own uid, no network and an empty environment.
# Nothing is served before it passes.
self_check_job() {
	if ! gcloud_run run jobs execute "$JOB_NAME" --region="$REGION" --args=--self-check --wait; then
		die "the runner's self-check failed in job $JOB_NAME: its verdict (with the fix) is in the execution's log above; no traffic was moved"
	fi
	say "self-check: the sandbox works in job $JOB_NAME"
}

# Prints "LATEST_READY_REVISION TRAFFIC_OK" for the service (gcloud's JSON on stdin):
# TRAFFIC_OK is "yes" when all traffic goes to the latest revision.
TRAFFIC_PY='
import json, sys
text = sys.stdin.read().strip()  # nothing in a dry run
status = json.loads(text).get("status", {}) if text else {}
latest = status.get("latestReadyRevisionName", "")
served = [t for t in status.get("traffic", []) if t.get("percent")]
ok = len(served) == 1 and served[0].get("revisionName") == latest and served[0].get("latestRevision")
print(latest, "yes" if ok else "no")
'

SERVING_REVISION=
deploy_service() {
	# '^|^' makes '|' the separator between variables: AUTH_MODE's value has a comma.
	local env="EXECUTOR=cloudrun|CLOUD_RUN_JOB=$JOB_RESOURCE|GOOGLE_CLOUD_PROJECT=$PROJECT"
	env+="|AUTH_MODE=$AUTH_MODE|RECONCILE_INVOKER=$SCHEDULER_SA|GUNICORN_THREADS=$API_CONCURRENCY"
	env+="|PUBLIC_URL=$SERVICE_URL|FILES_BUCKET=$FILES_BUCKET"
	# Public ingress: clients authenticate to the API itself (AUTH_MODE), and runners
	# call it back with their task token. CPU is allocated during requests only, so an
	# idle service costs nothing (README, "Deploy").
	gcloud_run run deploy "$SERVICE_NAME" --image="$API_IMAGE" --region="$REGION" \
		--service-account="$API_SA" --allow-unauthenticated \
		--concurrency="$API_CONCURRENCY" --cpu="$API_CPU" --memory="$API_MEMORY" \
		--timeout="$API_REQUEST_TIMEOUT" --min-instances=0 --max-instances="$MAX_INSTANCES" \
		--cpu-throttling --cpu-boost \
		--set-env-vars="^|^$env" \
		--set-secrets="TASK_TOKEN_KEY=$TOKEN_SECRET:latest,ANTHROPIC_API_KEY=$ANTHROPIC_SECRET:latest"
	# A Cloud Build rollout whose smoke test failed leaves the traffic pinned to an
	# older revision (--no-traffic): then this deployment would serve the old code.
	local state
	state=$(gcloud_query run services describe "$SERVICE_NAME" --region="$REGION" --format=json |
		python3 -c "$TRAFFIC_PY")
	SERVING_REVISION=${state% *}
	if [[ $DRY_RUN == true || ${state#* } != yes ]]; then
		gcloud_run run services update-traffic "$SERVICE_NAME" --region="$REGION" --to-latest
	fi
	grant "$SERVICE_NAME" "serviceAccount:$SCHEDULER_SA" roles/run.invoker \
		"run services" --region="$REGION"
	grant "$SERVICE_NAME" "serviceAccount:$BUILDER_SA" roles/run.developer \
		"run services" --region="$REGION"
}

ensure_scheduler() {
	local uri="$SERVICE_URL$RECONCILE_PATH" current verb=create
	current=$(gcloud_probe scheduler jobs describe "$SCHEDULER_JOB" --location="$REGION" \
		--format='value(httpTarget.uri)')
	if [[ $current == "$uri" ]]; then
		say "exists: scheduler job $SCHEDULER_JOB calling $uri"
		return 0
	fi
	if [[ -n $current ]]; then verb=update; fi
	# Every minute, with an OIDC token of the scheduler's account whose audience is the
	# endpoint's URL (api/services/reconcile_auth.py checks both).
	gcloud_run scheduler jobs "$verb" http "$SCHEDULER_JOB" --location="$REGION" \
		--schedule="$RECONCILE_SCHEDULE" --uri="$uri" --http-method=post \
		--oidc-service-account-email="$SCHEDULER_SA" --oidc-token-audience="$uri" \
		--attempt-deadline=60s --description="Settle overdue agent tasks"
}

# Pulls one field out of a JSON object on stdin: json_field NAME [NAME...] (nested).
json_field() {
	python3 -c '
import json, sys
value = json.load(sys.stdin)
for name in sys.argv[1:]:
    value = (value or {}).get(name)
print("" if value is None else value)' "$@"
}

smoke_test() {
	local health
	health=$(query curl --silent --show-error --fail --max-time 30 --retry 5 \
		--retry-connrefused "$SERVICE_URL/health")
	if [[ $DRY_RUN == false ]]; then
		[[ $(json_field status <<<"$health") == ok ]] || die "smoke test: /health answered $health"
		# The revision that answered (K_REVISION, api/routes/health.py) must be the one
		# just deployed: otherwise the URL still serves old code.
		local answered
		answered=$(json_field revision <<<"$health")
		[[ $answered == "$SERVING_REVISION" ]] ||
			die "smoke test: /health was answered by revision '$answered', not the new $SERVING_REVISION"
		say "smoke test: /health is ok, answered by $SERVING_REVISION"
	fi
	if [[ $SMOKE_TASK == false ]]; then return 0; fi

	# The API key goes to curl in a header file (-H @file), not on its command line.
	local headers="$TMP_DIR/smoke-headers" task id status stdout
	if [[ $DRY_RUN == false ]]; then
		(
			umask 077
			printf 'Authorization: Bearer %s\n' "$(tr -d '[:space:]' <"$SMOKE_API_KEY_FILE")" >"$headers"
		)
	fi
	task=$(query curl --silent --show-error --fail --max-time 30 -H "@$headers" \
		-H 'Content-Type: application/json' \
		--data '{"kind": "code", "language": "python", "code": "print(6 * 7)"}' \
		"$SERVICE_URL/api/tasks")
	id=TASK_ID
	if [[ $DRY_RUN == false ]]; then id=$(json_field id <<<"$task"); fi
	task=$(query curl --silent --show-error --fail --max-time 90 -H "@$headers" \
		"$SERVICE_URL/api/tasks/$id?wait=60")
	if [[ $DRY_RUN == true ]]; then return 0; fi
	status=$(json_field status <<<"$task")
	stdout=$(json_field result stdout <<<"$task")
	[[ $status == completed && $stdout == 42 ]] ||
		die "smoke test: task $id ended $status with stdout '$stdout': $task"
	say "smoke test: a code task ran (task $id printed 42)"
}

main() {
	parse_args "$@"
	validate_settings
	TMP_DIR=$(mktemp -d)
	trap 'rm -rf "$TMP_DIR"' EXIT
	if [[ $DRY_RUN == true ]]; then say "Dry run: printing every command, running none."; fi
	check_tools
	check_auth_and_project
	enable_apis
	ensure_repository
	ensure_build_bucket
	ensure_files_bucket
	ensure_firestore
	ensure_service_accounts
	ensure_launcher_role
	ensure_secrets
	grant_foundation_roles
	build_images
	deploy_job
	deploy_service
	ensure_scheduler
	printf 'Service URL: %s\n' "$SERVICE_URL"
	smoke_test
	say "Done."
}

main "$@"
