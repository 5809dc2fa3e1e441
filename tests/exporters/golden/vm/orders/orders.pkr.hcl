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

source "qemu" "orders" {
  disk_image           = true
  iso_url              = var.base_image
  iso_checksum         = "none"
  format               = "qcow2"
  headless             = true
  cpus                 = 1
  memory               = 512
  vm_name              = "shop-orders.qcow2"
  output_directory     = "output-shop-orders"
  ssh_username         = var.ssh_username
  ssh_private_key_file = var.ssh_private_key_file
  shutdown_command     = "sudo shutdown -P now"
}

build {
  sources = ["source.qemu.orders"]

  provisioner "file" {
    source      = "./orders/"
    destination = "/tmp/app"
  }
  provisioner "file" {
    source      = "${path.root}/shop-orders.service"
    destination = "/tmp/shop-orders.service"
  }

  provisioner "shell" {
    inline = [
      "sudo apt-get update",
      "sudo apt-get install -y python3",
      "sudo useradd --system --shell /usr/sbin/nologin shop || true",
      "sudo mkdir -p /opt/shop && sudo mv /tmp/app /opt/shop/orders",
      "sudo chown -R shop:shop /opt/shop/orders",
      "sudo install -m 0644 /tmp/shop-orders.service /etc/systemd/system/shop-orders.service",
      "sudo systemctl daemon-reload",
      "sudo systemctl enable shop-orders.service",
    ]
  }
}
