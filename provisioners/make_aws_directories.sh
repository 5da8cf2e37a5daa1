#!/usr/bin/env bash
# Create the directory layout Mail Ape expects and let the ssh user (ubuntu)
# write to /mailape so the following `file` provisioners can upload into it.
set -euo pipefail

sudo mkdir -p \
    /mailape/ubuntu \
    /mailape/apache \
    /mailape/django \
    /var/log/celery \
    /etc/mailape \
    /var/log/mailape

sudo chown -R ubuntu /mailape
