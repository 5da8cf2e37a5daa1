import json

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from mailinglist.models import MailingList, Subscriber
from mailinglist.tasks import send_confirmation_email_to_subscriber


@require_GET
def health(request):
    """Answer the load balancer's health check without touching the database."""
    return JsonResponse({'status': 'ok'})


@require_GET
def mailing_lists(request):
    lists = MailingList.objects.order_by('name').values('id', 'name')
    return JsonResponse({'mailing_lists': [
        {'id': str(ml['id']), 'name': ml['name']} for ml in lists
    ]})


@csrf_exempt  # a JSON API endpoint, called without a session or CSRF cookie
@require_POST
def subscribe(request, list_id):
    mailing_list = get_object_or_404(MailingList, id=list_id)
    try:
        email = json.loads(request.body or b'{}').get('email', '')
        validate_email(email)
    except (ValueError, AttributeError, ValidationError):
        return HttpResponseBadRequest('a valid "email" is required')
    subscriber, created = Subscriber.objects.get_or_create(
        email=email, mailing_list=mailing_list)
    if created:
        send_confirmation_email_to_subscriber.delay(str(subscriber.id))
    return JsonResponse({'id': str(subscriber.id), 'confirmed': subscriber.confirmed},
                        status=201 if created else 200)


@require_GET
def confirm(request, subscriber_id):
    subscriber = get_object_or_404(Subscriber, id=subscriber_id)
    if not subscriber.confirmed:
        subscriber.confirmed = True
        subscriber.save(update_fields=['confirmed'])
    return JsonResponse({'id': str(subscriber.id), 'confirmed': True})
