# Firestore in native mode, its composite indexes and the TTL of expiring data.

resource "google_firestore_database" "default" {
  name        = "(default)"
  location_id = coalesce(var.firestore_location, var.region)
  type        = "FIRESTORE_NATIVE"
  # terraform destroy leaves the data in place (README, "Tear down").
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.enabled]
}

# The indexes the list queries need, read from the same firestore.indexes.json that
# deploy-gcp.sh creates them from.
locals {
  firestore_indexes = {
    for index in jsondecode(file("${path.module}/../firestore.indexes.json")).indexes :
    join(" ", concat([index.collectionGroup], [for f in index.fields : "${f.fieldPath}:${f.order}"])) => index
  }
}

resource "google_firestore_index" "composite" {
  for_each    = local.firestore_indexes
  database    = google_firestore_database.default.name
  collection  = each.value.collectionGroup
  query_scope = each.value.queryScope

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value.fieldPath
      order      = fields.value.order
    }
  }
}

# Idempotency records carry an expireAt timestamp; Firestore deletes them after it.
# The field keeps its default single-field indexes (no index_config).
resource "google_firestore_field" "idempotency_ttl" {
  database   = google_firestore_database.default.name
  collection = "idempotency"
  field      = "expireAt"

  ttl_config {}
}

# Upload records (the files bucket's uploads/) expire after 24 h the same way; the
# bucket's lifecycle rule deletes their objects.
resource "google_firestore_field" "uploads_ttl" {
  database   = google_firestore_database.default.name
  collection = "uploads"
  field      = "expireAt"

  ttl_config {}
}

# A user's per-day task counters (api/services/admission.py) expire after their day.
resource "google_firestore_field" "admission_daily_ttl" {
  database   = google_firestore_database.default.name
  collection = "admissionDaily"
  field      = "expireAt"

  ttl_config {}
}

# Tasks and their events live TASK_RETENTION_DAYS: the API writes each one's expireAt.
resource "google_firestore_field" "tasks_ttl" {
  database   = google_firestore_database.default.name
  collection = "tasks"
  field      = "expireAt"

  ttl_config {}
}

resource "google_firestore_field" "events_ttl" {
  database   = google_firestore_database.default.name
  collection = "events"
  field      = "expireAt"

  ttl_config {}
}

# The fleet-wide launch rate's windows (api/services/launch_rate.py) expire an hour
# after they end.
resource "google_firestore_field" "launch_windows_ttl" {
  database   = google_firestore_database.default.name
  collection = "runLaunchWindows"
  field      = "expireAt"

  ttl_config {}
}
