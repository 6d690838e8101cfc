# A pure module: no provider, no resource. Its locals and outputs evaluate offline (`terraform init` needs no
# registry); `precondition` in outputs needs Terraform >= 1.2 (tested with Terraform 1.11).
terraform {
  required_version = ">= 1.2"
}
