"""16-digit wallet numbers whose last digit is a Luhn check digit."""

import secrets


def luhn_check_digit(payload: str) -> str:
    total = 0
    # Double every second digit counting from the right of the full number,
    # i.e. from the rightmost digit of the payload.
    for index, char in enumerate(reversed(payload)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def is_valid_number(number: str) -> bool:
    return (
        len(number) == 16
        and number.isdigit()
        and luhn_check_digit(number[:-1]) == number[-1]
    )


def generate_number() -> str:
    payload = str(secrets.randbelow(9) + 1) + "".join(
        str(secrets.randbelow(10)) for _ in range(14)
    )
    return payload + luhn_check_digit(payload)
