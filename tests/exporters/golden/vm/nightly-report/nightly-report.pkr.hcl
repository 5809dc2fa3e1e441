packer {
  required_plugins {
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = ">= 1.1.0"
    }
  }
}

variable "base_image" {
  type        = string
  description = "A Debian 12 cloud image (qcow2) to start from"
  default     = "debian-12-genericcloud-amd64.qcow2"
}

variable "ssh_username" {
  type    = string
  default = "debian"
}

variable "ssh_private_key_file" {
  type = string
}

source "qemu" "nightly-report" {
  disk_image           = true
  iso_url              = var.base_image
  iso_checksum         = "none"
  format               = "qcow2"
  headless             = true
  cpus                 = 1
  memory               = 512
  vm_name              = "shop-nightly-report.qcow2"
  output_directory     = "output-shop-nightly-report"
  ssh_username         = var.ssh_username
  ssh_private_key_file = var.ssh_private_key_file
  shutdown_command     = "sudo shutdown -P now"
}

build {
  sources = ["source.qemu.nightly-report"]

  provisioner "file" {
    source      = "./jobs/"
    destination = "/tmp/app"
  }
  provisioner "file" {
    source      = "${path.root}/shop-nightly-report.service"
    destination = "/tmp/shop-nightly-report.service"
  }

  provisioner "file" {
    source      = "${path.root}/shop-nightly-report.timer"
    destination = "/tmp/shop-nightly-report.timer"
  }

  provisioner "shell" {
    inline = [
      "sudo apt-get update",
      "sudo apt-get install -y python3",
      "sudo useradd --system --shell /usr/sbin/nologin shop || true",
      "sudo mkdir -p /opt/shop && sudo mv /tmp/app /opt/shop/nightly-report",
      "sudo chown -R shop:shop /opt/shop/nightly-report",
      "sudo install -m 0644 /tmp/shop-nightly-report.service /etc/systemd/system/shop-nightly-report.service",
      "sudo install -m 0644 /tmp/shop-nightly-report.timer /etc/systemd/system/shop-nightly-report.timer",
      "sudo systemctl daemon-reload",
      "sudo systemctl enable shop-nightly-report.timer",
    ]
  }
}
