from wallets.numbers import generate_number, is_valid_number, luhn_check_digit


def test_known_luhn_numbers():
    assert luhn_check_digit("7992739871") == "3"
    assert is_valid_number("4539578763621486")
    assert not is_valid_number("4539578763621487")


def test_generated_numbers_are_16_digits_with_a_valid_check_digit():
    numbers = {generate_number() for _ in range(1000)}
    assert len(numbers) == 1000
    assert all(len(n) == 16 and n[0] != "0" and is_valid_number(n) for n in numbers)
