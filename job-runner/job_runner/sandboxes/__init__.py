"""The sandbox backends behind the seam of job_runner.sandbox (issue 18)."""
