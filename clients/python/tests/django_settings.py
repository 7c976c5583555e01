"""Django settings for the tests (and mypy's Django plugin)."""

SECRET_KEY = "authd-client-tests"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.django_urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"]
MIDDLEWARE: list[str] = []
DATABASES: dict[str, object] = {}
USE_TZ = True
REST_FRAMEWORK = {"UNAUTHENTICATED_USER": None}
