# User secrets are sealed under one Cloud KMS key (envelope encryption, ADR 0016):
# each value under a fresh data key, the data key wrapped by this key. The API's
# account may only encrypt and decrypt with it (iam.tf); nothing else holds a role.
# The names are deploy-gcp.sh's KMS_KEYRING and KMS_KEY.

resource "google_kms_key_ring" "platform" {
  name     = "agent-platform"
  location = var.region

  depends_on = [google_project_service.enabled]
}

resource "google_kms_crypto_key" "user_secrets" {
  name     = "user-secrets"
  key_ring = google_kms_key_ring.platform.id
  purpose  = "ENCRYPT_DECRYPT"
  # A new key version every 90 days (checkov CKV_GCP_43); older ones open what they wrapped.
  rotation_period = "7776000s"

  lifecycle {
    # Destroying the key loses every user secret sealed under it.
    prevent_destroy = true
  }
}
