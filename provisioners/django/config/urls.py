from django.contrib import admin
from django.urls import path

from mailinglist import views

urlpatterns = [
    path('admin/', admin.site.urls),
    path('health/', views.health, name='health'),
    path('lists/', views.mailing_lists, name='mailing-lists'),
    path('lists/<uuid:list_id>/subscribe/', views.subscribe, name='subscribe'),
    path('subscriptions/<uuid:subscriber_id>/confirm/', views.confirm,
         name='confirm-subscription'),
]
