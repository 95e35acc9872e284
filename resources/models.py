"""The site as staff describe it in Django admin: clusters and partitions, locations, storage
tiers, data nodes and flavors (the sizes of IO-SEA ephemeral services)."""

from django.db import models


class Cluster(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    batch_system = models.CharField(
        max_length=20, choices=[("slurm", "Slurm"), ("local", "Local")], default="slurm"
    )
    description = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name


class Partition(models.Model):
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="partitions")
    name = models.CharField(max_length=64)
    is_default = models.BooleanField(default=False)
    max_time_minutes = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="uniq_partition")]

    def __str__(self) -> str:
        return f"{self.cluster}/{self.name}"


class Location(models.Model):
    """A place where services run and data lives (an IO-SEA location, an EWMS site)."""

    name = models.SlugField(max_length=64, unique=True)
    cluster = models.ForeignKey(
        Cluster, on_delete=models.SET_NULL, null=True, blank=True, related_name="locations"
    )
    description = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name


class StorageTier(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    mount_point = models.CharField(max_length=500)
    rank = models.PositiveSmallIntegerField(default=0, help_text="0 is the fastest tier.")

    class Meta:
        ordering = ["rank", "name"]

    def __str__(self) -> str:
        return self.name


class DataNode(models.Model):
    name = models.CharField(max_length=128, unique=True)
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="data_nodes")
    cores = models.PositiveIntegerField()
    memory_mib = models.PositiveIntegerField()
    storage_gib = models.PositiveIntegerField(default=0)
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


class Flavor(models.Model):
    """A size of ephemeral service (cores, memory, storage) offered at some locations."""

    name = models.SlugField(max_length=64, unique=True)
    cores = models.PositiveIntegerField()
    memory_mib = models.PositiveIntegerField()
    storage_gib = models.PositiveIntegerField(default=0)
    locations = models.ManyToManyField(Location, blank=True, related_name="flavors")

    def __str__(self) -> str:
        return self.name
