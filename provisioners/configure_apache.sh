#!/usr/bin/env bash
# Replace Apache's default site with the Mail Ape mod_wsgi virtual host.
set -euo pipefail

sudo rm -f /etc/apache2/sites-enabled/*
sudo ln -sf /mailape/apache/mailape.apache.conf /etc/apache2/sites-enabled/000-mailape.conf
