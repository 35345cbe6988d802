# Where the builds go: the images (Artifact Registry; Container Registry is shut
# down) and the sources Cloud Build uploads.

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:The images hold the repository's own code and no secret; Google-managed encryption, without a Cloud KMS key to run and pay for.
  location      = var.region
  repository_id = var.repository_id
  format        = "DOCKER"
  description   = "Agent platform images (api, runner)"

  depends_on = [google_project_service.enabled]
}

# Cloud Build's source uploads, in a bucket of their own: the builder account reads
# only this one. Uploads are deleted after a week.
resource "google_storage_bucket" "builds" {
  #checkov:skip=CKV_GCP_62:Access logs of week-old build uploads would outlive what they log; Cloud Audit Logs record access.
  #checkov:skip=CKV_GCP_78:Uploads are deleted after 7 days; versions would keep them.
  name                        = "${var.project_id}-agent-builds"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

# Task files, uploads and conversation workspaces (DESIGN section 11). Private; only the
# API's account reaches its objects. Uploads live a day (their records too, by the
# Firestore TTL); a superseded snapshot gets a Custom-Time from the API, which deletes
# it, and the second rule is the backstop a day later. Same rules as deploy-gcp.sh.
resource "google_storage_bucket" "files" {
  #checkov:skip=CKV_GCP_62:Access logs of every task file would double the writes; Cloud Audit Logs record access.
  #checkov:skip=CKV_GCP_78:Files are short-lived by design (lifecycle below); versions would keep deleted ones.
  name                        = "${var.project_id}-agent-files"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  lifecycle_rule {
    condition {
      age            = 1
      matches_prefix = ["uploads/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_custom_time = 1
      matches_prefix         = ["conversations/"]
    }
    action {
      type = "Delete"
    }
  }

  # A task's files live TASK_RETENTION_DAYS (api/config.py), as its records do.
  lifecycle_rule {
    condition {
      age            = 30
      matches_prefix = ["tasks/"]
    }
    action {
      type = "Delete"
    }
  }

  # A custom environment's archive, ENVIRONMENT_ARCHIVE_DAYS (api/config.py) after its
  # last read or use (the API moves its Custom-Time on).
  lifecycle_rule {
    condition {
      days_since_custom_time = 30
      matches_prefix         = ["environments/"]
    }
    action {
      type = "Delete"
    }
  }

  # Pieces (`<name>.part<i>`) a cancelled or crashed upload left unjoined.
  lifecycle_rule {
    condition {
      age            = 1
      matches_suffix = [".part0", ".part1", ".part2", ".part3", ".part4", ".part5", ".part6", ".part7", ".part8", ".part9", ".part10", ".part11", ".part12", ".part13", ".part14", ".part15", ".part16", ".part17", ".part18", ".part19", ".part20", ".part21", ".part22", ".part23", ".part24", ".part25", ".part26", ".part27", ".part28", ".part29", ".part30", ".part31"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}
