from __future__ import annotations

from django.urls import path

from webhooks import apis

urlpatterns = [
    path("teams/<str:team>/webhooks", apis.WebhookListApi.as_view(), name="api-webhooks"),
    path("teams/<str:team>/webhooks/<int:webhook_id>", apis.WebhookDetailApi.as_view(), name="api-webhook"),
    path("teams/<str:team>/webhooks/<int:webhook_id>/test", apis.WebhookTestApi.as_view(), name="api-webhook-test"),
    path(
        "teams/<str:team>/webhooks/<int:webhook_id>/deliveries",
        apis.WebhookDeliveryListApi.as_view(),
        name="api-webhook-deliveries",
    ),
    path(
        "teams/<str:team>/webhooks/<int:webhook_id>/deliveries/<uuid:delivery_id>/redeliver",
        apis.DeliveryRedeliverApi.as_view(),
        name="api-webhook-redeliver",
    ),
]
