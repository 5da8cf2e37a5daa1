#!/usr/bin/env bash
# Install and enable the Celery systemd unit and its tmpfiles.d entry.
set -euo pipefail

sudo ln -sf /mailape/ubuntu/celery.service /etc/systemd/system/celery.service
sudo mkdir -p /etc/systemd/system/multi-user.target.wants
sudo ln -sf /mailape/ubuntu/celery.service /etc/systemd/system/multi-user.target.wants/celery.service
sudo ln -sf /mailape/ubuntu/tmpfiles-celery.conf /etc/tmpfiles.d/celery.conf
sudo systemctl daemon-reload
