# Only djmoney.models.fields is stubbed here (see its comment); the rest of
# django-money (djmoney.money ...) is read from the installed, typed package.
