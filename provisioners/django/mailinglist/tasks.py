from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail

from mailinglist.models import Subscriber


@shared_task
def send_confirmation_email_to_subscriber(subscriber_id):
    subscriber = Subscriber.objects.select_related('mailing_list').get(id=subscriber_id)
    link = 'https://{}/subscriptions/{}/confirm/'.format(
        settings.MAILING_LIST_LINK_DOMAIN, subscriber.id)
    send_mail(
        subject='Confirm your subscription to {}'.format(subscriber.mailing_list.name),
        message='Please confirm your subscription by visiting {}'.format(link),
        from_email=settings.MAILING_LIST_FROM_EMAIL,
        recipient_list=[subscriber.email],
    )
