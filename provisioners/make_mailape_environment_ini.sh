#!/usr/bin/env bash
# Write the runtime configuration read by mod_wsgi (/etc/mailape/mailape.ini,
# via django/config/wsgi.py) and by the Celery unit (/etc/mailape/celery.env).
# The secret values come from the shell provisioner's environment_vars.
set -euo pipefail

: "${WEB_DOMAIN:?WEB_DOMAIN must be set}"
: "${DJANGO_DB_PASSWORD:?DJANGO_DB_PASSWORD must be set}"
: "${DJANGO_DB_HOST:?DJANGO_DB_HOST must be set}"
: "${DJANGO_SECRET:?DJANGO_SECRET must be set}"
: "${EMAIL_HOST=}"
: "${EMAIL_HOST_PASSWORD=}"

ENVIRONMENT="
DJANGO_ALLOWED_HOSTS=${WEB_DOMAIN}
DJANGO_DB_NAME=mailape
DJANGO_DB_USER=mailape
DJANGO_DB_PASSWORD=${DJANGO_DB_PASSWORD}
DJANGO_DB_HOST=${DJANGO_DB_HOST}
DJANGO_DB_PORT=5432
DJANGO_LOG_FILE=/var/log/mailape/mailape.log
DJANGO_SECRET_KEY=${DJANGO_SECRET}
DJANGO_SETTINGS_MODULE=config.production_settings
MAIL_APE_FROM_EMAIL=admin@blvdplatform.com
EMAIL_HOST=${EMAIL_HOST}
EMAIL_HOST_USER=mailape
EMAIL_HOST_PASSWORD=${EMAIL_HOST_PASSWORD}
EMAIL_HOST_PORT=587
EMAIL_HOST_TLS=true
"

INI_FILE="[mod_wsgi]
${ENVIRONMENT}
"

# The files hold secrets: readable by root and www-data only, and never echoed
# to the build log (tee's copy on stdout goes to /dev/null).
echo "${INI_FILE}" | sudo tee "/etc/mailape/mailape.ini" >/dev/null
echo "${ENVIRONMENT}" | sudo tee "/etc/mailape/celery.env" >/dev/null
sudo chown root:www-data /etc/mailape/mailape.ini /etc/mailape/celery.env
sudo chmod 0640 /etc/mailape/mailape.ini /etc/mailape/celery.env
