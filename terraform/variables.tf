# Inputs. The names and defaults match deploy-gcp.sh's settings (tests/deploy checks it).

variable "project_id" {
  description = "The Google Cloud project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run service and job, the Artifact Registry repository, the build bucket and the Cloud Scheduler job."
  type        = string
  default     = "us-central1"
}

variable "firestore_location" {
  description = "Location of the Firestore database (a region or a multi-region such as nam5). Empty means the region. Fixed once the database exists."
  type        = string
  default     = ""
}

variable "service_name" {
  description = "Name of the Cloud Run service that runs the API."
  type        = string
  default     = "agent-api"
}

variable "job_name" {
  description = "Name of the Cloud Run job whose executions run the tasks (one execution per task)."
  type        = string
  default     = "agent-runner"
}

variable "repository_id" {
  description = "Artifact Registry (Docker) repository for the api and runner images."
  type        = string
  default     = "agent-platform"
}

variable "scheduler_job_name" {
  description = "Name of the Cloud Scheduler job that calls the reconcile endpoint every minute."
  type        = string
  default     = "agent-reconcile"
}

variable "auth_mode" {
  description = "AUTH_MODE of the API: firebase, apikey or firebase,apikey. dev is refused on Cloud Run."
  type        = string
  default     = "firebase,apikey"

  validation {
    condition     = contains(["firebase", "apikey", "firebase,apikey", "apikey,firebase"], var.auth_mode)
    error_message = "auth_mode must be firebase, apikey or firebase,apikey (dev trusts X-User-Id and is refused on Cloud Run)."
  }
}

variable "api_image" {
  description = "Image of the service when Terraform creates it. The default is Google's placeholder; cloudbuild.yaml rolls out the real image, and Terraform leaves the image alone after creation."
  type        = string
  default     = "us-docker.pkg.dev/cloudrun/container/hello"
}

variable "runner_image" {
  description = "Image of the job when Terraform creates it. The default is Google's placeholder job; cloudbuild.yaml rolls out the real image, and Terraform leaves the image alone after creation."
  type        = string
  default     = "us-docker.pkg.dev/cloudrun/container/job:latest"
}

variable "api_max_instances" {
  description = "Most instances the API service scales out to (it scales to zero when idle)."
  type        = number
  default     = 10
}

variable "job_cpu" {
  description = "CPU of each large task execution (a Cloud Run CPU limit; more than 4 GiB of memory needs \"2\")."
  type        = string
  default     = "2"
}

variable "job_memory" {
  description = "Memory of each large task execution: the largest task (MAX_MEMORY_MB), its tmpfs disk (TASK_DISK_MB) and the runner (RUNNER_RESERVE_MB) of api/config.py; tests/deploy checks the default against them."
  type        = string
  default     = "6656Mi"
}

variable "small_job_name" {
  description = "Name of the small Cloud Run job (code tasks of up to SMALL_JOB_MAX_TASK_MEMORY_MB). Empty means <job_name>-small."
  type        = string
  default     = ""
}

variable "small_job_cpu" {
  description = "CPU of each small task execution (a Cloud Run CPU limit; 1 CPU allows up to 4 GiB)."
  type        = string
  default     = "1"
}

variable "small_job_memory" {
  description = "Memory of each small task execution: the small job's largest task (SMALL_JOB_MAX_TASK_MEMORY_MB), its tmpfs disk (TASK_DISK_MB) and the runner (RUNNER_RESERVE_MB) of api/config.py; tests/deploy checks the default against them."
  type        = string
  default     = "3584Mi"
}

variable "deletion_protection" {
  description = "Refuse to delete the Cloud Run service and job on terraform destroy."
  type        = bool
  default     = false
}

variable "anthropic_api_key" {
  description = "The Anthropic API key, written to Secret Manager as a write-only value: never in the plan or the state. Give it as TF_VAR_anthropic_api_key."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "anthropic_api_key_version" {
  description = "Raise it to write anthropic_api_key again as the secret's new version (rotation)."
  type        = number
  default     = 1
}

variable "task_token_key" {
  description = "The task-token signing key (32 random bytes, base64: head -c 32 /dev/urandom | base64), written to Secret Manager as a write-only value. Give it as TF_VAR_task_token_key."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "task_token_key_version" {
  description = "Raise it to write task_token_key again as the secret's new version (tokens of running tasks stop working: rotate when none runs)."
  type        = number
  default     = 1
}

variable "firebase_web_config" {
  description = "FIREBASE_WEB_CONFIG of the API: the Firebase web app's config (JSON with apiKey, authDomain, projectId) for the console's Google sign-in. Empty leaves it unset."
  type        = string
  default     = ""
}

variable "api_env" {
  description = "Any other setting of the README's configuration table for the API, by name (for example { MAX_TASKS_IN_FLIGHT = \"100\" }). The settings Terraform derives (EXECUTOR, CLOUD_RUN_JOB, PUBLIC_URL...) cannot be given here."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.api_env), [
      "EXECUTOR", "CLOUD_RUN_JOB", "GOOGLE_CLOUD_PROJECT", "AUTH_MODE", "RECONCILE_INVOKER",
      "GUNICORN_THREADS", "PUBLIC_URL", "FILES_BUCKET", "TASK_TOKEN_KEY", "ANTHROPIC_API_KEY",
      "FIREBASE_WEB_CONFIG",
    ])) == 0
    error_message = "api_env cannot set what Terraform derives or has a variable for."
  }
}
