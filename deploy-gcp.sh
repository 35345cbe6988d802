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
  --region REGION           REGION                   us-central1 (Run, Scheduler, Firestore,
                                                     Artifact Registry)
  --build-region REGION     BUILD_REGION             the region (Cloud Build's pool: some regions
                                                     refuse builds on the default pool)
  --firestore-location LOC  FIRESTORE_LOCATION       the region (used only on creation)
  --service NAME            SERVICE_NAME             agent-api (the Cloud Run service)
  --job NAME                JOB_NAME                 agent-runner (the large Cloud Run job: agents
                                                     and code tasks of more memory); every deploy
                                                     checks the new image in NAME-candidate first
  --small-job NAME          SMALL_JOB_NAME           <job>-small (code tasks of up to
                                                     SMALL_JOB_MAX_TASK_MEMORY_MB, api/config.py)
  --repository NAME         REPOSITORY               agent-platform (Artifact Registry)
  --scheduler-job NAME      SCHEDULER_JOB            agent-reconcile (Cloud Scheduler)
  --job-cpu CPU             JOB_CPU                  2 (per task execution; Cloud Run needs 2
                                                     CPUs for more than 4 GiB)
  --job-memory SIZE         JOB_MEMORY               the largest task plus the runner, from
                                                     api/config.py (6656Mi); no less is accepted
  --small-job-cpu CPU       SMALL_JOB_CPU            1
  --small-job-memory SIZE   SMALL_JOB_MEMORY         the small job's largest task plus the runner,
                                                     from api/config.py (3584Mi); no less
  --tag TAG                 IMAGE_TAG                <git commit>-<UTC time>

The API's settings. A rerun keeps every one it is not given (update semantics: a setting
added by hand with `gcloud run services update --update-env-vars` stays too); the defaults
apply when the service is created:
  --auth-mode MODE          AUTH_MODE                firebase,apikey (or firebase, apikey)
  --max-instances N         MAX_INSTANCES            10 (the service's ceiling)
  --firebase-web-config JSON FIREBASE_WEB_CONFIG     the Firebase web app's config, for the
                                                     console's Google sign-in (README, Console)
  --env NAME=VALUE                                   any other setting of the README's
                                                     configuration table; repeat it

The Anthropic API key, stored in Secret Manager; never pass it as an argument:
  --anthropic-key-file FILE ANTHROPIC_API_KEY_FILE   read it from FILE, or from stdin with '-'.
      Needed on the first run; later, a key that differs from the stored one becomes the
      secret's new version (that is how you rotate it). Asked for on a terminal if missing.

The task-token signing key is generated on the first run, also into Secret Manager:
  --rotate-token-key                                 generate a new one (tokens of tasks
      running at that moment stop working: rotate when none runs)

Every deploy ends with a smoke test: one code task (print(6 * 7)) through the new revision
and the candidate job, with an API key the script writes for the user deploy-smoke and
deletes when the task has ended; then /health, answered by the new revision.

Rolling out images that are built already (what cloudbuild.yaml runs, as the builder):
  --rollout-only            only the candidate checks, the live job and the traffic: no
                            API, resource, secret or grant is touched, nothing is built
                            (--tag names the pushed images)
  --project-number N        the project's number (the builder may not read the project)

  --dry-run                 print every command and run none
  -h, --help                this text
EOF
}

# -- Settings -------------------------------------------------------------------------
# Names and defaults match terraform/variables.tf and cloudbuild.yaml's substitutions.
PROJECT=${GOOGLE_CLOUD_PROJECT:-}
REGION=${REGION:-us-central1}
BUILD_REGION=${BUILD_REGION:-}
FIRESTORE_LOCATION=${FIRESTORE_LOCATION:-}
SERVICE_NAME=${SERVICE_NAME:-agent-api}
JOB_NAME=${JOB_NAME:-agent-runner}
REPOSITORY=${REPOSITORY:-agent-platform}
SCHEDULER_JOB=${SCHEDULER_JOB:-agent-reconcile}
# The API's operator settings: empty means "keep what the service has" (the defaults
# below apply when it is created).
AUTH_MODE=${AUTH_MODE:-}
MAX_INSTANCES=${MAX_INSTANCES:-}
FIREBASE_WEB_CONFIG=${FIREBASE_WEB_CONFIG:-}
DEFAULT_AUTH_MODE=firebase,apikey
DEFAULT_MAX_INSTANCES=10
EXTRA_ENV=()
JOB_CPU=${JOB_CPU:-2}
JOB_MEMORY=${JOB_MEMORY:-}
SMALL_JOB_NAME=${SMALL_JOB_NAME:-}
SMALL_JOB_CPU=${SMALL_JOB_CPU:-1}
SMALL_JOB_MEMORY=${SMALL_JOB_MEMORY:-}
IMAGE_TAG=${IMAGE_TAG:-}
ANTHROPIC_API_KEY_FILE=${ANTHROPIC_API_KEY_FILE:-}
ROTATE_TOKEN_KEY=false
ROLLOUT_ONLY=false
PROJECT_NUMBER=
DRY_RUN=false

# Fixed names: the service accounts, the secrets, the custom role.
API_SA_ID="agent-api"
RUNNER_SA_ID="agent-runner"
SCHEDULER_SA_ID="agent-scheduler"
BUILDER_SA_ID="agent-builder"
ANTHROPIC_SECRET="anthropic-api-key"
TOKEN_SECRET="task-token-key"
# User secrets are sealed under this Cloud KMS key (ADR 0016; terraform/kms.tf).
KMS_KEYRING="agent-platform"
KMS_KEY="user-secrets"
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
# The jobs' timeout, JOB_TASK_TIMEOUT: the longest task (MAX_TIMEOUT_SECONDS) plus the
# execution's margin (RUNNER_OVERHEAD_SECONDS: its start, the workspace restore, the
# upload), from api/config.py (validate_settings); each execution is started with its
# own task's timeout plus that margin.
# One retry of an attempt that died (the runner exits non-zero only when it could not
# report); its claim is idempotent, so a retry never yields a second result.
JOB_MAX_RETRIES=1
RECONCILE_PATH=/internal/v1/reconcile
RECONCILE_SCHEDULE='* * * * *'
# Firestore deletes these records once their field has passed: "collection.field".
TTLS=(idempotency.expireAt uploads.expireAt admissionDaily.expireAt tasks.expireAt events.expireAt runLaunchWindows.expireAt)
# The files bucket (DESIGN section 11): uploads live a day (their records too, by the
# TTL above); a superseded conversation snapshot gets a Custom-Time from the API, which
# deletes it, and this rule is the backstop a day later. A task's files live
# TASK_RETENTION_DAYS (30, api/config.py), as its records do (the TTLs on tasks and
# events); a custom environment's archive goes ENVIRONMENT_ARCHIVE_DAYS (30) after its
# last read or use, which the API marks on it as its Custom-Time; a piece of a file
# (`<name>.part<i>`, at most 32) older than a day was left by an upload that was
# cancelled or crashed before it was joined.
FILES_LIFECYCLE='{"rule": [
  {"action": {"type": "Delete"}, "condition": {"age": 1, "matchesPrefix": ["uploads/"]}},
  {"action": {"type": "Delete"}, "condition": {"daysSinceCustomTime": 1, "matchesPrefix": ["conversations/"]}},
  {"action": {"type": "Delete"}, "condition": {"age": 30, "matchesPrefix": ["tasks/"]}},
  {"action": {"type": "Delete"}, "condition": {"daysSinceCustomTime": 30, "matchesPrefix": ["environments/"]}},
  {"action": {"type": "Delete"}, "condition": {"age": 1, "matchesSuffix": [".part0", ".part1", ".part2", ".part3", ".part4", ".part5", ".part6", ".part7", ".part8", ".part9", ".part10", ".part11", ".part12", ".part13", ".part14", ".part15", ".part16", ".part17", ".part18", ".part19", ".part20", ".part21", ".part22", ".part23", ".part24", ".part25", ".part26", ".part27", ".part28", ".part29", ".part30", ".part31"]}}
]}'
REQUIRED_APIS=(
	artifactregistry.googleapis.com
	cloudbuild.googleapis.com
	cloudkms.googleapis.com
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
		# --name=value is --name value.
		if [[ $1 =~ ^(--[a-z-]+)=(.*)$ ]]; then
			set -- "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${@:2}"
		fi
		case $1 in
		--project) need_value "$@"; PROJECT=$2; shift ;;
		--region) need_value "$@"; REGION=$2; shift ;;
		--build-region) need_value "$@"; BUILD_REGION=$2; shift ;;
		--firebase-web-config) need_value "$@"; FIREBASE_WEB_CONFIG=$2; shift ;;
		--env) need_value "$@"; EXTRA_ENV+=("$2"); shift ;;
		--firestore-location) need_value "$@"; FIRESTORE_LOCATION=$2; shift ;;
		--service) need_value "$@"; SERVICE_NAME=$2; shift ;;
		--job) need_value "$@"; JOB_NAME=$2; shift ;;
		--repository) need_value "$@"; REPOSITORY=$2; shift ;;
		--scheduler-job) need_value "$@"; SCHEDULER_JOB=$2; shift ;;
		--auth-mode) need_value "$@"; AUTH_MODE=$2; shift ;;
		--max-instances) need_value "$@"; MAX_INSTANCES=$2; shift ;;
		--job-cpu) need_value "$@"; JOB_CPU=$2; shift ;;
		--job-memory) need_value "$@"; JOB_MEMORY=$2; shift ;;
		--small-job) need_value "$@"; SMALL_JOB_NAME=$2; shift ;;
		--small-job-cpu) need_value "$@"; SMALL_JOB_CPU=$2; shift ;;
		--small-job-memory) need_value "$@"; SMALL_JOB_MEMORY=$2; shift ;;
		--tag) need_value "$@"; IMAGE_TAG=$2; shift ;;
		--anthropic-key-file) need_value "$@"; ANTHROPIC_API_KEY_FILE=$2; shift ;;
		--rotate-token-key) ROTATE_TOKEN_KEY=true ;;
		--rollout-only) ROLLOUT_ONLY=true ;;
		--project-number) need_value "$@"; PROJECT_NUMBER=$2; shift ;;
		--dry-run) DRY_RUN=true ;;
		-h | --help) usage; exit 0 ;;
		--anthropic-key | --anthropic-api-key | --api-key)
			die "$1: a key on the command line is visible to every process on this machine; use --anthropic-key-file FILE (or - for stdin)" ;;
		*) die "unknown argument: $1 (see --help)" ;;
		esac
		shift
	done
}

# Prints "LARGE SMALL TASK TIMEOUT": in MiB, the memory an execution of each job needs
# (its largest task's memory, that task's tmpfs disk, which is memory on Cloud Run, and
# the runner itself) and the largest task's, as api/config.py sets them (MAX_MEMORY_MB
# for the large job, SMALL_JOB_MAX_TASK_MEMORY_MB for the small one); then the jobs'
# timeout in seconds.
JOB_MEMORY_PY='
import ast, sys
sizes = {}
for node in ast.parse(open(sys.argv[1]).read()).body:
    if isinstance(node, ast.Assign):
        for target, value in zip(node.targets[-1].elts if isinstance(node.targets[-1], ast.Tuple) else node.targets,
                                 node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]):
            if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
                sizes[target.id] = value.value
overhead = sizes["TASK_DISK_MB"] + sizes["RUNNER_RESERVE_MB"]
print(sizes["MAX_MEMORY_MB"] + overhead, sizes["SMALL_JOB_MAX_TASK_MEMORY_MB"] + overhead,
      sizes["MAX_MEMORY_MB"], sizes["MAX_TIMEOUT_SECONDS"] + sizes["RUNNER_OVERHEAD_SECONDS"])
'
job_memory_mb() { python3 -c "$JOB_MEMORY_PY" "$ROOT/api/config.py"; }

# memory_at_least NAME FLAG VALUE NEEDED: VALUE (like 6656Mi or 8Gi) in MiB, if it holds
# NEEDED MiB.
memory_at_least() {
	local flag=$1 value=$2 needed=$3 given
	[[ $value =~ ^([0-9]+)(Mi|Gi)$ ]] || die "$flag must be like 6656Mi or 8Gi, not '$value'"
	given=${BASH_REMATCH[1]}
	if [[ ${BASH_REMATCH[2]} == Gi ]]; then given=$((given * 1024)); fi
	((given >= needed)) || die "$flag $value cannot hold the largest task: it needs ${needed}Mi (the task's memory + TASK_DISK_MB + RUNNER_RESERVE_MB in api/config.py)"
}

validate_settings() {
	command -v python3 >/dev/null || die "python3 is needed (it reads api/config.py and firestore.indexes.json)"
	[[ -n $PROJECT ]] || die "no project: pass --project ID or set GOOGLE_CLOUD_PROJECT"
	case $AUTH_MODE in
	"" | firebase | apikey | firebase,apikey | apikey,firebase) ;;
	dev) die "AUTH_MODE=dev trusts the X-User-Id header and the API refuses it on Cloud Run: use firebase, apikey or firebase,apikey" ;;
	*) die "--auth-mode must be firebase, apikey or firebase,apikey, not '$AUTH_MODE'" ;;
	esac
	[[ -z $MAX_INSTANCES || $MAX_INSTANCES =~ ^[1-9][0-9]*$ ]] ||
		die "--max-instances must be a positive integer"
	if [[ -n $FIREBASE_WEB_CONFIG ]] &&
		! python3 -c 'import json, sys; assert isinstance(json.loads(sys.argv[1]), dict)' \
			"$FIREBASE_WEB_CONFIG" 2>/dev/null; then
		die "--firebase-web-config must be the web app's config as a JSON object"
	fi
	local setting
	for setting in ${EXTRA_ENV[@]+"${EXTRA_ENV[@]}"}; do
		[[ $setting =~ ^[A-Z][A-Z0-9_]*=.*$ ]] || die "--env takes NAME=VALUE, not '$setting'"
		case ${setting%%=*} in
		# The script's own: each has its flag, or is derived.
		EXECUTOR | CLOUD_RUN_JOB | CLOUD_RUN_JOB_SMALL | GOOGLE_CLOUD_PROJECT | PUBLIC_URL | FILES_BUCKET | \
			RECONCILE_INVOKER | GUNICORN_THREADS | TASK_TOKEN_KEY | ANTHROPIC_API_KEY | \
			AUTH_MODE | FIREBASE_WEB_CONFIG)
			die "--env ${setting%%=*}=...: the script sets ${setting%%=*} itself (see --help)" ;;
		esac
	done
	BUILD_REGION=${BUILD_REGION:-$REGION}
	if [[ -n $ANTHROPIC_API_KEY_FILE && $ANTHROPIC_API_KEY_FILE != - && ! -r $ANTHROPIC_API_KEY_FILE ]]; then
		die "cannot read the Anthropic key file $ANTHROPIC_API_KEY_FILE"
	fi
	FIRESTORE_LOCATION=${FIRESTORE_LOCATION:-$REGION}
	local needed small_needed timeout
	read -r needed small_needed MAX_TASK_MEMORY_MB timeout <<<"$(job_memory_mb)"
	JOB_TASK_TIMEOUT="${timeout}s"
	JOB_MEMORY=${JOB_MEMORY:-${needed}Mi}
	SMALL_JOB_MEMORY=${SMALL_JOB_MEMORY:-${small_needed}Mi}
	memory_at_least --job-memory "$JOB_MEMORY" "$needed"
	memory_at_least --small-job-memory "$SMALL_JOB_MEMORY" "$small_needed"
	if [[ $ROLLOUT_ONLY == true && -z $IMAGE_TAG ]]; then
		die "--rollout-only needs --tag: the tag of the images pushed already"
	fi
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
	SMALL_JOB_NAME=${SMALL_JOB_NAME:-$JOB_NAME-small}
	local jobs="projects/$PROJECT/locations/$REGION/jobs"
	JOB_RESOURCE="$jobs/$JOB_NAME" SMALL_JOB_RESOURCE="$jobs/$SMALL_JOB_NAME"
	CANDIDATE_JOB_RESOURCE="$jobs/$JOB_NAME-candidate"
	SMALL_CANDIDATE_JOB_RESOURCE="$jobs/$SMALL_JOB_NAME-candidate"
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

check_auth_and_project() {
	local account number=$PROJECT_NUMBER
	# Any credential gcloud can use: a login, a service account, or an access token
	# (auth/access_token_file, as CI gives one). The token itself goes nowhere.
	if [[ $DRY_RUN == false ]] && ! gcloud auth print-access-token >/dev/null 2>&1; then
		die "gcloud has no credentials: run 'gcloud auth login' first"
	fi
	account=$(query gcloud config get account 2>/dev/null || true)
	if [[ -z $number ]] &&
		! number=$(gcloud_query projects describe "$PROJECT" --format='value(projectNumber)'); then
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

# User secrets' key (ADR 0016): a key ring and one symmetric key in the region, made
# once (KMS never deletes either), the key rotated every 90 days; older versions open
# the data keys they wrapped.
ensure_user_secrets_key() {
	if gcloud_exists kms keyrings describe "$KMS_KEYRING" --location="$REGION"; then
		say "exists: key ring $KMS_KEYRING"
	else
		gcloud_run kms keyrings create "$KMS_KEYRING" --location="$REGION"
	fi
	if gcloud_exists kms keys describe "$KMS_KEY" --keyring="$KMS_KEYRING" --location="$REGION"; then
		say "exists: key $KMS_KEY"
		return 0
	fi
	local next
	next=$(python3 -c 'import datetime as d
print((d.datetime.now(d.timezone.utc) + d.timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ"))')
	gcloud_run kms keys create "$KMS_KEY" --keyring="$KMS_KEYRING" --location="$REGION" \
		--purpose=encryption --rotation-period=90d --next-rotation-time="$next"
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
	retry_iam gcloud "${group[@]}" add-iam-policy-binding "$resource" "$@" \
		--member="$member" --role="$role" ${condition[@]+"${condition[@]}"} \
		--project="$PROJECT" --quiet
	POLICY_KEY=
}
POLICY="" POLICY_KEY=""

# A service account is eventually consistent: for a while after its creation, a policy
# that names it is refused ("Service account ... does not exist"). Google's IAM docs say
# to retry with exponential backoff:
# https://cloud.google.com/iam/docs/service-accounts-create#creating
# retry_iam CMD...: run CMD, again after 2, 4, 8, 16 and 32 s while that is its error.
IAM_RETRY_DELAYS=(2 4 8 16 32)
retry_iam() {
	show "$@"
	if [[ $DRY_RUN == true ]]; then return 0; fi
	local errors="$TMP_DIR/iam-errors" delay
	for delay in "${IAM_RETRY_DELAYS[@]}" last; do
		if "$@" 2>"$errors"; then return 0; fi
		if [[ $delay == last ]] || ! grep -Eq 'does not exist|not found' "$errors"; then break; fi
		say "IAM does not know a new account yet; again in ${delay}s: $(tail -n 1 "$errors")"
		sleep "$delay"
	done
	cat "$errors" >&2
	return 1
}

# Each account gets exactly what it uses, on the narrowest resource that grants it.
# The runner's account gets nothing at all.
grant_foundation_roles() {
	# The project: api uses Firestore (a database-level grant needs IAM conditions; the
	# project is the narrowest plain scope), the builder writes its build logs.
	grant "$PROJECT" "serviceAccount:$API_SA" roles/datastore.user projects
	grant "$PROJECT" "serviceAccount:$BUILDER_SA" roles/logging.logWriter projects
	# The builder writes and deletes the smoke task's API key (cloudbuild.yaml). It adds
	# nothing to what it can do: it deploys code that runs as api, which has this role.
	grant "$PROJECT" "serviceAccount:$BUILDER_SA" roles/datastore.user projects
	# api: its two secrets, and acting as the runner for RunJob; the builder deploys as
	# api and runner (cloudbuild.yaml).
	grant "$ANTHROPIC_SECRET" "serviceAccount:$API_SA" roles/secretmanager.secretAccessor secrets
	grant "$TOKEN_SECRET" "serviceAccount:$API_SA" roles/secretmanager.secretAccessor secrets
	# api: seal and open user secrets with their one key, nothing more.
	grant "$KMS_KEY" "serviceAccount:$API_SA" roles/cloudkms.cryptoKeyEncrypterDecrypter \
		"kms keys" --keyring="$KMS_KEYRING" --location="$REGION"
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
	gcloud_run beta builds submit "$ROOT" --config="$config" --region="$BUILD_REGION" \
		--service-account="projects/$PROJECT/serviceAccounts/$BUILDER_SA" \
		--gcs-source-staging-dir="gs://$BUILD_BUCKET/source"
}

# -- The rollout: candidate first ----------------------------------------------------
#
# The new runner image goes to the candidate job (JOB-candidate) first, where one
# execution runs --self-check; then a revision of the service that launches its tasks on
# the candidate runs one real code task end to end. Only when both passed does the live
# job get the image, right before the traffic moves to a revision that launches on it.
# A failure stops the deploy with the live job and the serving revision untouched
# (docs/decisions/0014-candidate-job-and-launch-rate.md).

# deploy_job NAME CPU MEMORY: create the job, or roll the new image onto it. No secrets and no
# environment (--clear-env-vars): the API passes TASK_ID, TASK_TOKEN and API_URL to each
# execution as overrides, and the runner holds nothing else. Jobs always run in the
# second-generation execution environment, whose user namespaces bubblewrap needs;
# --self-check proves it works.
deploy_job() {
	local name=$1 cpu=$2 memory=$3
	gcloud_run run jobs deploy "$name" --image="$RUNNER_IMAGE" --region="$REGION" \
		--service-account="$RUNNER_SA" --clear-env-vars \
		--tasks=1 --max-retries="$JOB_MAX_RETRIES" --task-timeout="$JOB_TASK_TIMEOUT" \
		--cpu="$cpu" --memory="$memory"
	if [[ $ROLLOUT_ONLY == true ]]; then return 0; fi
	grant "$name" "serviceAccount:$API_SA" "projects/$PROJECT/roles/$LAUNCHER_ROLE" \
		"run jobs" --region="$REGION"
	grant "$name" "serviceAccount:$BUILDER_SA" roles/run.developer "run jobs" --region="$REGION"
}

# One execution of the job with --self-check (job_runner/self_check.py): every sandbox
# backend is probed there, and the one SANDBOX=auto picks must start a program with its
# own uid, no network and an empty environment. `execute --wait` prints no container
# log, so on failure the verdict (with its fix) is read back from Cloud Logging.
self_check_job() {
	local name=$1 output="$TMP_DIR/self-check.out" execution
	show gcloud run jobs execute "$name" --region="$REGION" --args=--self-check --wait \
		--project="$PROJECT" --quiet
	if [[ $DRY_RUN == true ]]; then return 0; fi
	if gcloud run jobs execute "$name" --region="$REGION" --args=--self-check --wait \
		--project="$PROJECT" --quiet 2> >(tee "$output" >&2); then
		say "self-check: the sandbox works in job $name"
		return 0
	fi
	execution=$(grep -Eo 'executions describe [a-z0-9-]+' "$output" | tail -n 1 | cut -d' ' -f3 || true)
	say "the runner's self-check failed in job $name${execution:+ (execution $execution)}"
	if [[ -n $execution ]]; then print_self_check_verdict "$name" "$execution"; fi
	die "the runner's self-check failed in job $name: the live jobs and the serving revision are unchanged"
}

# Prints the self-check's verdict from the execution's log: the JSON line with "ok".
VERDICT_PY='
import json, sys
for entry in json.loads(sys.stdin.read() or "[]"):
    payload = entry.get("jsonPayload") or {}
    text = entry.get("textPayload") or ""
    if not payload and text.startswith("{"):
        try:
            payload = json.loads(text)
        except ValueError:
            continue
    if "ok" in payload:
        print("self-check verdict:", json.dumps(payload, sort_keys=True))
        if payload.get("fix"):
            print("the fix:", payload["fix"])
        break
else:
    print("no verdict in the execution log yet: gcloud logging read again in a minute")
'
print_self_check_verdict() {
	local job=$1 execution=$2 filter
	filter="resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"$job\""
	filter+=" AND labels.\"run.googleapis.com/execution_name\"=\"$execution\""
	gcloud_probe logging read "$filter" --freshness=1h --limit=50 --format=json |
		python3 -c "$VERDICT_PY" >&2
}

# The service's current state as "EXISTS LATEST_READY TRAFFIC_OK URL AUTH_MODE" (gcloud's
# JSON on stdin): TRAFFIC_OK is "yes" when all traffic goes to the latest revision.
SERVICE_STATE_PY='
import json, sys
text = sys.stdin.read().strip()  # nothing when it does not exist, or in a dry run
service = json.loads(text) if text else {}
status = service.get("status", {})
latest = status.get("latestReadyRevisionName", "") or "-"
served = [t for t in status.get("traffic", []) if t.get("percent")]
ok = len(served) == 1 and served[0].get("revisionName") == latest and served[0].get("latestRevision")
spec = service.get("spec", {}).get("template", {}).get("spec", {})
env = {e["name"]: e.get("value", "") for c in spec.get("containers", []) for e in c.get("env", [])}
print("yes" if service else "no", latest, "yes" if ok else "no", status.get("url", "") or "-",
      env.get("AUTH_MODE") or "-")
'
SERVICE_EXISTS=no
service_state() {
	gcloud_probe run services describe "$SERVICE_NAME" --region="$REGION" --format=json |
		python3 -c "$SERVICE_STATE_PY"
}

# The env every revision gets ('|' separates: AUTH_MODE's value has a comma), with the
# jobs its tasks launch on (large, small) and the URL its runners call back. Operator settings are in it
# only when given, or when the service is created: --update-env-vars keeps the others.
service_env() {
	local job=$1 small_job=$2 public_url=$3 auth_mode=$4 env setting
	env="EXECUTOR=cloudrun|CLOUD_RUN_JOB=$job|CLOUD_RUN_JOB_SMALL=$small_job"
	env+="|GOOGLE_CLOUD_PROJECT=$PROJECT"
	env+="|RECONCILE_INVOKER=$SCHEDULER_SA|GUNICORN_THREADS=$API_CONCURRENCY"
	env+="|PUBLIC_URL=$public_url|FILES_BUCKET=$FILES_BUCKET"
	env+="|SECRETS_KMS_KEY=projects/$PROJECT/locations/$REGION/keyRings/$KMS_KEYRING/cryptoKeys/$KMS_KEY"
	if [[ -n $auth_mode ]]; then env+="|AUTH_MODE=$auth_mode"; fi
	if [[ -n $FIREBASE_WEB_CONFIG ]]; then env+="|FIREBASE_WEB_CONFIG=$FIREBASE_WEB_CONFIG"; fi
	for setting in ${EXTRA_ENV[@]+"${EXTRA_ENV[@]}"}; do env+="|$setting"; done
	printf '%s' "$env"
}

CANDIDATE_URL="" RELEASE_AUTH_MODE=""
# A revision of the new API image whose tasks launch on the candidate job. An existing
# service gets it with no traffic, under the tag `candidate` (its own URL, which its
# runners call back); a new service has nothing to protect and serves it at once.
deploy_candidate_service() {
	local state exists url current_auth
	state=$(service_state)
	read -r exists _ _ url current_auth <<<"$state"
	SERVICE_EXISTS=$exists
	local -a placement=(--no-traffic --tag=candidate)
	CANDIDATE_URL="https://candidate---${url#https://}"
	if [[ $exists == no && $ROLLOUT_ONLY == true && $DRY_RUN == false ]]; then
		die "no service $SERVICE_NAME to roll out onto: create it with deploy-gcp.sh or terraform/"
	fi
	if [[ $exists == no ]]; then
		placement=()
		CANDIDATE_URL=$SERVICE_URL
		AUTH_MODE=${AUTH_MODE:-$DEFAULT_AUTH_MODE}
		MAX_INSTANCES=${MAX_INSTANCES:-$DEFAULT_MAX_INSTANCES}
	fi
	# The smoke task signs in with an API key: a candidate of a firebase-only API accepts
	# keys too, and release_service sets the operator's mode back.
	local auth_mode=$AUTH_MODE effective=${AUTH_MODE:-${current_auth#-}}
	if [[ $effective == firebase ]]; then
		auth_mode=firebase,apikey RELEASE_AUTH_MODE=firebase
	fi
	local -a scaling=(--min-instances=0)
	if [[ -n $MAX_INSTANCES ]]; then scaling+=(--max-instances="$MAX_INSTANCES"); fi
	# Public through the disabled invoker IAM check, never an allUsers binding (which
	# Domain Restricted Sharing refuses, the default for organizations since 2024):
	# https://cloud.google.com/run/docs/securing/managing-access#invoker_check
	# Clients authenticate to the API itself (AUTH_MODE), runners with their task token,
	# the scheduler with its OIDC token. Changing that setting takes
	# run.services.setIamPolicy, which the builder lacks: a rollout keeps the service's.
	local -a public=(--no-invoker-iam-check)
	if [[ $ROLLOUT_ONLY == true ]]; then public=(); fi
	# CPU is allocated during requests only, so an idle service costs nothing (README,
	# "Deploy").
	gcloud_run run deploy "$SERVICE_NAME" --image="$API_IMAGE" --region="$REGION" \
		--service-account="$API_SA" ${public[@]+"${public[@]}"} \
		--concurrency="$API_CONCURRENCY" --cpu="$API_CPU" --memory="$API_MEMORY" \
		--timeout="$API_REQUEST_TIMEOUT" "${scaling[@]}" \
		--cpu-throttling --cpu-boost ${placement[@]+"${placement[@]}"} \
		--update-env-vars="^|^$(service_env "$CANDIDATE_JOB_RESOURCE" "$SMALL_CANDIDATE_JOB_RESOURCE" \
			"$CANDIDATE_URL" "$auth_mode")" \
		--update-secrets="TASK_TOKEN_KEY=$TOKEN_SECRET:latest,ANTHROPIC_API_KEY=$ANTHROPIC_SECRET:latest"
	if [[ $ROLLOUT_ONLY == true ]]; then return 0; fi
	grant "$SERVICE_NAME" "serviceAccount:$SCHEDULER_SA" roles/run.invoker \
		"run services" --region="$REGION"
	grant "$SERVICE_NAME" "serviceAccount:$BUILDER_SA" roles/run.developer \
		"run services" --region="$REGION"
}

# Moves the API to the live job: a revision that launches there (the candidate's image
# and settings otherwise), all traffic to it, and the candidate tag removed so that
# nothing launches on the candidate job any more.
release_service() {
	local env="EXECUTOR=cloudrun|CLOUD_RUN_JOB=$JOB_RESOURCE|CLOUD_RUN_JOB_SMALL=$SMALL_JOB_RESOURCE"
	env+="|PUBLIC_URL=$SERVICE_URL"
	if [[ -n $RELEASE_AUTH_MODE ]]; then env+="|AUTH_MODE=$RELEASE_AUTH_MODE"; fi
	gcloud_run run services update "$SERVICE_NAME" --region="$REGION" --update-env-vars="^|^$env"
	local -a tags=()
	if [[ $SERVICE_EXISTS == yes ]]; then tags=(--remove-tags=candidate); fi
	gcloud_run run services update-traffic "$SERVICE_NAME" --region="$REGION" --to-latest \
		${tags[@]+"${tags[@]}"}
	local state
	state=$(service_state)
	read -r _ SERVING_REVISION _ _ <<<"$state"
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

# -- The smoke task -------------------------------------------------------------------
#
# A credential of its own: an API key for the user deploy-smoke, written straight into
# Firestore's apiKeys collection the way `flask --app api keys create` stores one (the
# key's SHA-256 as the document id; only the hash is stored), by the deploying account,
# which may write Firestore. It is deleted as soon as the task has ended, whatever the
# outcome (and by the EXIT trap if the script dies first). tests/deploy checks that the
# API accepts the document and refuses the key once it is deleted.
SMOKE_USER=deploy-smoke
FIRESTORE_API=${CLOUDSDK_API_ENDPOINT_OVERRIDES_FIRESTORE:-https://firestore.googleapis.com/}
SMOKE_KEY_DOC=
SMOKE_KEY_PY='
import hashlib, json, secrets, sys, time
key = "ak_" + secrets.token_urlsafe(32)
digest = hashlib.sha256(key.encode()).hexdigest()
now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
fields = {
    "id": {"stringValue": digest}, "owner": {"stringValue": sys.argv[1]},
    "prefix": {"stringValue": key[:12]}, "name": {"stringValue": "deploy-gcp.sh smoke task"},
    "createdAt": {"timestampValue": now}, "lastUsedAt": {"nullValue": None},
    "revokedAt": {"nullValue": None},
}
open(sys.argv[2], "w").write(json.dumps({"fields": fields}))
print(digest, key)
'

# Writes the key's document and a curl header file with the key (mode 600): neither the
# key nor the access token is ever on a command line.
mint_smoke_key() {
	local documents="${FIRESTORE_API%/}/v1/projects/$PROJECT/databases/(default)/documents"
	show curl --request POST "$documents/apiKeys?documentId=<sha256 of a new key>"
	if [[ $DRY_RUN == true ]]; then return 0; fi
	local minted digest
	(
		umask 077
		printf 'Authorization: Bearer %s\n' "$(gcloud auth print-access-token)" >"$TMP_DIR/google-auth"
		minted=$(python3 -c "$SMOKE_KEY_PY" "$SMOKE_USER" "$TMP_DIR/smoke-key.json")
		printf 'Authorization: Bearer %s\n' "${minted#* }" >"$TMP_DIR/smoke-auth"
		printf '%s' "${minted%% *}" >"$TMP_DIR/smoke-digest"
	)
	digest=$(<"$TMP_DIR/smoke-digest")
	SMOKE_KEY_DOC="$documents/apiKeys/$digest"
	curl --silent --show-error --fail --max-time 30 -H "@$TMP_DIR/google-auth" \
		-H 'Content-Type: application/json' --data "@$TMP_DIR/smoke-key.json" \
		"$documents/apiKeys?documentId=$digest" >/dev/null ||
		die "smoke test: could not write its API key to Firestore"
	say "smoke test: wrote a one-deploy API key for $SMOKE_USER (${digest:0:16}...)"
}

revoke_smoke_key() {
	if [[ -z $SMOKE_KEY_DOC ]]; then return 0; fi
	if curl --silent --show-error --fail --max-time 30 -H "@$TMP_DIR/google-auth" \
		--request DELETE "$SMOKE_KEY_DOC" >/dev/null; then
		say "smoke test: deleted its API key"
	else
		say "WARNING: could not delete the smoke test's key: delete $SMOKE_KEY_DOC"
	fi
	SMOKE_KEY_DOC=
}

# print(6 * 7) through the candidate revision, twice: a small code task (the small
# candidate job) and one of the largest memory (the large candidate job), with the runner
# calling the candidate back: the RunJob permission, the callback URL and the task token
# are exercised on both jobs before any user's task is.
smoke_tasks() {
	local url=$1
	mint_smoke_key
	smoke_task "$url" 512 "$SMALL_CANDIDATE_JOB_RESOURCE"
	smoke_task "$url" "$MAX_TASK_MEMORY_MB" "$CANDIDATE_JOB_RESOURCE"
	revoke_smoke_key
}

smoke_task() {
	local url=$1 memory=$2 job=$3 task id status stdout execution body
	body="{\"kind\": \"code\", \"language\": \"python\", \"code\": \"print(6 * 7)\", \"timeoutSeconds\": 60, \"memoryMb\": $memory}"
	task=$(query curl --silent --show-error --fail --max-time 60 --retry 5 --retry-connrefused \
		-H "@$TMP_DIR/smoke-auth" -H 'Content-Type: application/json' --data "$body" \
		"$url/api/tasks") ||
		die "smoke test: $url/api/tasks refused the smoke task: the live jobs and the serving revision are unchanged"
	id=TASK_ID
	if [[ $DRY_RUN == false ]]; then id=$(json_field id <<<"$task"); fi
	# A cold execution takes tens of seconds to start: wait up to 5 minutes.
	local attempt
	for attempt in 1 2 3 4 5; do
		task=$(query curl --silent --show-error --fail --max-time 90 -H "@$TMP_DIR/smoke-auth" \
			"$url/api/tasks/$id?wait=60") || task='{}'
		if [[ $DRY_RUN == true ]]; then return 0; fi
		status=$(json_field status <<<"$task")
		case $status in queued | dispatched | running) ;; *) break ;; esac
		say "smoke test: task $id is $status (wait $attempt of 5)"
	done
	stdout=$(json_field result stdout <<<"$task")
	execution=$(json_field execution name <<<"$task")
	[[ $status == completed && $stdout == 42 ]] ||
		die "smoke test: task $id ended ${status:-unknown} with stdout '$stdout' (the live jobs and the serving revision are unchanged): $task"
	[[ $execution == "$job/executions/"* ]] ||
		die "smoke test: task $id of ${memory} MB ran in '$execution', not in the candidate job ${job##*/}"
	say "smoke test: task $id (${memory} MB) printed 42 in job ${job##*/}"
}

SERVING_REVISION=
smoke_health() {
	local health
	health=$(query curl --silent --show-error --fail --max-time 30 --retry 5 \
		--retry-connrefused "$SERVICE_URL/health")
	if [[ $DRY_RUN == true ]]; then return 0; fi
	[[ $(json_field status <<<"$health") == ok ]] || die "smoke test: /health answered $health"
	# The revision that answered (K_REVISION, api/routes/health.py) must be the one just
	# released: otherwise the URL still serves old code.
	local answered
	answered=$(json_field revision <<<"$health")
	[[ $answered == "$SERVING_REVISION" ]] ||
		die "smoke test: /health was answered by revision '$answered', not the new $SERVING_REVISION"
	say "smoke test: /health is ok, answered by $SERVING_REVISION"
}

main() {
	parse_args "$@"
	validate_settings
	TMP_DIR=$(mktemp -d)
	trap 'revoke_smoke_key; rm -rf "$TMP_DIR"' EXIT
	if [[ $DRY_RUN == true ]]; then say "Dry run: printing every command, running none."; fi
	check_tools
	check_auth_and_project
	if [[ $ROLLOUT_ONLY == false ]]; then
		enable_apis
		ensure_repository
		ensure_build_bucket
		ensure_files_bucket
		ensure_firestore
		ensure_service_accounts
		ensure_launcher_role
		ensure_secrets
		ensure_user_secrets_key
		grant_foundation_roles
		build_images
	fi
	deploy_job "$JOB_NAME-candidate" "$JOB_CPU" "$JOB_MEMORY"
	deploy_job "$SMALL_JOB_NAME-candidate" "$SMALL_JOB_CPU" "$SMALL_JOB_MEMORY"
	self_check_job "$JOB_NAME-candidate"
	self_check_job "$SMALL_JOB_NAME-candidate"
	deploy_candidate_service
	smoke_tasks "$CANDIDATE_URL"
	# Every check passed: the live jobs get the image, then the traffic moves.
	deploy_job "$JOB_NAME" "$JOB_CPU" "$JOB_MEMORY"
	deploy_job "$SMALL_JOB_NAME" "$SMALL_JOB_CPU" "$SMALL_JOB_MEMORY"
	release_service
	if [[ $ROLLOUT_ONLY == false ]]; then ensure_scheduler; fi
	printf 'Service URL: %s\n' "$SERVICE_URL"
	smoke_health
	say "Done."
}

main "$@"
