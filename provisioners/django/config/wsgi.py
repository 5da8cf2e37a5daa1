import os
import configparser

from django.core.wsgi import get_wsgi_application

if not os.environ.get('DJANGO_SETTINGS_MODULE'):
    # mod_wsgi cannot pass environment variables to the Python process, so
    # read them from the file written by make_mailape_environment_ini.sh.
    # interpolation=None: a '%' in a password must not be taken as a
    # ConfigParser interpolation.
    parser = configparser.ConfigParser(interpolation=None)
    parser.read('/etc/mailape/mailape.ini')
    for name, val in parser['mod_wsgi'].items():
        os.environ[name.upper()] = val

application = get_wsgi_application()
