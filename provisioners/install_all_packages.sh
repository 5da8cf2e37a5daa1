#!/usr/bin/env bash
# Install the Ubuntu packages listed in /mailape/ubuntu/packages.txt, create the
# Mail Ape virtualenv and install the production Python requirements into it.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# No wait for cloud-init here: the builder's wait_for_boot (on by default) waits
# for first boot and the dpkg/apt locks before the first provisioner runs.

# Package names only: skip comments and blank lines.
mapfile -t packages < <(grep -i '^[a-z]' /mailape/ubuntu/packages.txt)

sudo apt-get update
sudo -E apt-get install -y --no-install-recommends "${packages[@]}"

virtualenv -p "$(command -v python3)" /mailape/virtualenv
# Use the virtualenv's own pip rather than sourcing bin/activate (which is not
# safe under `set -u`); the effect is the same.
/mailape/virtualenv/bin/pip install --upgrade pip
/mailape/virtualenv/bin/pip install -r /mailape/requirements.production.txt

# /run/celery is normally created at boot from /etc/tmpfiles.d/celery.conf;
# create it now too so the chown below does not fail on a missing directory.
sudo mkdir -p /var/run/celery

# www-data (Apache and the Celery worker) exists only once apache2 is installed.
sudo chown -R www-data /var/log/mailape \
    /etc/mailape \
    /var/run/celery \
    /var/log/celery
