# Reconciliation every minute: Cloud Scheduler calls the API with an OIDC token of the
# scheduler's account whose audience is the endpoint's URL
# (api/services/reconcile_auth.py checks both).

resource "google_cloud_scheduler_job" "reconcile" {
  name             = var.scheduler_job_name
  region           = var.region
  description      = "Settle overdue agent tasks"
  schedule         = "* * * * *"
  time_zone        = "Etc/UTC"
  attempt_deadline = "60s"

  http_target {
    uri         = "${local.service_url}/internal/v1/reconcile"
    http_method = "POST"

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = "${local.service_url}/internal/v1/reconcile"
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.scheduler_invokes_api]
}
