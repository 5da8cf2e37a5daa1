# The HCL2 twin of web_worker.json: written by `imgbuild hcl2_upgrade images/web_worker.json`
# and tidied by hand (variables grouped, the source AMI as a data source, the uploads as one
# dynamic block). Build it as the JSON one:
#
#   imgbuild build -var django_db_host=... -var web_domain=... images/web_worker.pkr.hcl
#
# Go-template text in strings ({{timestamp}}, {{ .SourceAMIName }}) is build data that imgbuild
# renders when the build runs, as Packer's amazon plugin does.

packer {
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.0.0"
    }
  }
}

variable "aws_access_key" {
  type      = string
  default   = ""
  sensitive = true
}

variable "aws_secret_key" {
  type      = string
  default   = ""
  sensitive = true
}

variable "region" {
  type    = string
  default = "us-west-2"
}

variable "instance_type" {
  type    = string
  default = "t2.micro"
}

variable "django_db_password" {
  type      = string
  sensitive = true
}

variable "django_db_host" {
  type = string
}

variable "django_secret" {
  type      = string
  sensitive = true
}

variable "email_host" {
  type = string
}

variable "email_host_password" {
  type      = string
  default   = ""
  sensitive = true
}

variable "mail_ape_aws_key" {
  type      = string
  default   = ""
  sensitive = true
}

variable "mail_ape_secret_key" {
  type      = string
  default   = ""
  sensitive = true
}

variable "sqs_celery_queue" {
  type    = string
  default = "mailape-celery"
}

variable "web_domain" {
  type = string
}

locals {
  provisioners = "${path.root}/../provisioners"
}

# The newest Ubuntu 22.04 image, looked up when the build starts (with the builder's region and
# credentials).
data "amazon-ami" "jammy" {
  filters = {
    name                = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"
    virtualization-type = "hvm"
    root-device-type    = "ebs"
  }
  owners      = ["099720109477"]
  most_recent = true
}

source "amazon-ebs" "web_worker" {
  access_key      = var.aws_access_key
  secret_key      = var.aws_secret_key
  region          = var.region
  instance_type   = var.instance_type
  source_ami      = data.amazon-ami.jammy.id
  ssh_username    = "ubuntu"
  ami_name        = "web-worker-{{timestamp}}"
  ami_description = "Mail Ape web worker (Django, Apache mod_wsgi, Celery) on Ubuntu 22.04"
  tags = {
    project         = "mailape"
    role            = "web_worker"
    source_ami      = "{{ .SourceAMI }}"
    source_ami_name = "{{ .SourceAMIName }}"
    built_by        = "imgbuild"
  }
}

build {
  description = "Mail Ape web worker AMI: Django behind Apache mod_wsgi plus a Celery worker on SQS, on Ubuntu 22.04 (Jammy)."
  sources     = ["source.amazon-ebs.web_worker"]

  provisioner "shell" {
    script = "${local.provisioners}/make_aws_directories.sh"
  }

  # Uploads, in this order: the requirements files, then the trees.
  dynamic "provisioner" {
    for_each = {
      "requirements.common.txt"     = "/mailape/requirements.common.txt"
      "requirements.production.txt" = "/mailape/requirements.production.txt"
      "ubuntu/"                     = "/mailape/ubuntu"
      "apache/"                     = "/mailape/apache"
      "django/"                     = "/mailape/django"
    }
    labels = ["file"]
    content {
      source      = "${local.provisioners}/${provisioner.key}"
      destination = provisioner.value
    }
  }

  provisioner "shell" {
    inline = ["find /mailape/django -name '*.pyc' -delete"]
  }

  provisioner "shell" {
    scripts = [
      for s in ["install_all_packages", "configure_apache", "make_mailape_environment_ini", "configure_celery"] :
      "${local.provisioners}/${s}.sh"
    ]
    environment_vars = [
      "DJANGO_DB_HOST=${var.django_db_host}",
      "DJANGO_DB_PASSWORD=${var.django_db_password}",
      "DJANGO_SECRET=${var.django_secret}",
      "EMAIL_HOST=${var.email_host}",
      "EMAIL_HOST_PASSWORD=${var.email_host_password}",
      "WEB_DOMAIN=${var.web_domain}",
    ]
  }

  # One chain: the new AMI is booted and checked before anything records or hands it on; a failed
  # check deregisters it (deregister_on_failure), so the manifest and the outputs never name it.
  post-processors {
    post-processor "boot-test" {
      timeout          = "5m"
      environment_vars = ["WEB_DOMAIN=${var.web_domain}"]
      inline = [
        "systemctl is-enabled celery.service",
        "test -e /etc/apache2/mods-enabled/wsgi.load",
        "addr=$(getent hosts \"$(hostname)\" | awk '{print $1; exit}')",
        "curl -fsS -D /tmp/boot-test.headers -o /tmp/boot-test.body -H \"Host: $WEB_DOMAIN\" \"http://$${addr:-127.0.0.1}/health/\"",
        "echo \"GET http://$${addr:-127.0.0.1}/health/ (Host: $WEB_DOMAIN):\"; head -n 1 /tmp/boot-test.headers; grep -i '^Server:' /tmp/boot-test.headers; cat /tmp/boot-test.body; echo",
        "grep -qi '^Server: Apache' /tmp/boot-test.headers",
        "grep -qx '{\"status\": \"ok\"}' /tmp/boot-test.body",
        "echo 'web worker checks passed: celery.service enabled; Django answered /health/ through Apache and mod_wsgi'",
      ]
    }

    post-processor "manifest" {
      output     = "web-worker-manifest.json"
      strip_path = true
      custom_data = {
        project    = "mailape"
        role       = "web_worker"
        web_domain = var.web_domain
      }
    }

    post-processor "ami-outputs" {
      json_output = "web-worker-amis.json"
      env_output  = "web-worker-amis.env"
    }
  }
}
