from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "fablab.demo"
    label = "demo"
