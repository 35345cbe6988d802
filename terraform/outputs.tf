output "service_url" {
  description = "The API's URL (also its PUBLIC_URL)."
  value       = google_cloud_run_v2_service.api.uri
}

output "job_name" {
  description = "The runner job's full name, as CLOUD_RUN_JOB holds it."
  value       = google_cloud_run_v2_job.runner["live"].id
}

output "small_job_name" {
  description = "The small runner job's full name, as CLOUD_RUN_JOB_SMALL holds it."
  value       = google_cloud_run_v2_job.runner["small"].id
}

output "image_repository" {
  description = "Where cloudbuild.yaml pushes the api and runner images."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "builder_service_account" {
  description = "The account to run cloudbuild.yaml as (gcloud builds submit --service-account)."
  value       = google_service_account.builder.id
}
