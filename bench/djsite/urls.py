from django.urls import path

from . import views

urlpatterns = [
    path("items/<int:page>/", views.items, name="items"),
]
