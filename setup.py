"""The one thing pyproject.toml cannot say: templates/ and seeds/ ship inside the package."""

from setuptools import find_namespace_packages, setup

# The project keeps templates/ and seeds/ at the top of the checkout (the layout it was
# asked for); the wheel carries them as newsletter/templates and newsletter/seeds, where
# newsletter.core.config.shipped_dir finds them once installed. Their files are listed in
# pyproject.toml's package-data.
SHIPPED = {"newsletter.templates": "templates", "newsletter.seeds": "seeds"}


def folders(package: str, where: str) -> list[str]:
    """The package and every folder under it: setuptools ships data only from packages it
    is told about (to it, a folder of templates or catalogs is a namespace package)."""
    found = find_namespace_packages(where=where, exclude=["*__pycache__*"])
    return [package, *(f"{package}.{name}" for name in found)]


setup(
    packages=[
        *folders("newsletter", "newsletter"),
        *(name for package, where in SHIPPED.items() for name in folders(package, where)),
    ],
    package_dir=SHIPPED,
)
