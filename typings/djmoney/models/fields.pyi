# What the django-stubs plugin needs to know about django-money's model fields.
#
# django-money ships py.typed but its MoneyField is an untyped DecimalField
# subclass, so the plugin typed every MoneyField attribute as a Decimal, while at
# run time the attribute is a djmoney.money.Money (MoneyFieldProxy.__get__). The
# descriptor types below are what MoneyFieldProxy really returns and accepts.
#
# The currency column a MoneyField adds beside itself (CurrencyField, named by
# `currency_field_name`) is created in contribute_to_class, where no type checker
# sees it: each model declares it as an annotation (`currency: str`).
from decimal import Decimal
from typing import Any

from django.db import models
from django.db.models.expressions import Combinable
from djmoney.money import Money

class MoneyField(models.DecimalField):
    # A Money where DecimalField has a Decimal: the descriptor is django-money's.
    _pyi_private_set_type: Money | Decimal | int | str | Combinable  # type: ignore[assignment]  # django-money's descriptor takes Money
    _pyi_private_get_type: Money  # type: ignore[assignment]  # and returns Money

    default_currency: str | None
    currency_field_name: str | None
    def __init__(
        self,
        verbose_name: Any = ...,
        name: str | None = ...,
        max_digits: int | None = ...,
        decimal_places: int = ...,
        default: Any = ...,
        default_currency: str | None = ...,
        currency_choices: Any = ...,
        currency_max_length: int = ...,
        currency_field_name: str | None = ...,
        money_descriptor_class: type = ...,
        **kwargs: Any,
    ) -> None: ...

class CurrencyField(models.CharField):
    def __init__(
        self, price_field: MoneyField | None = ..., default: Any = ..., **kwargs: Any
    ) -> None: ...

class MoneyFieldProxy:
    field: MoneyField
    currency_field_name: str
    def __init__(self, field: MoneyField) -> None: ...
    def __get__(self, obj: Any, type: Any = ...) -> Any: ...
    def __set__(self, obj: Any, value: Any) -> None: ...
