# The Terraform and provider versions this configuration is written for.
terraform {
  # 1.11: write-only arguments (the secrets' values, secrets.tf).
  required_version = ">= 1.11"

  required_providers {
    google = {
      # The version tests/deploy validates every resource against (the schema in
      # @cdktf/provider-google 16.12.1, tests/deploy/provider-schema/).
      source  = "hashicorp/google"
      version = "6.50.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
