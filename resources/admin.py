from django.contrib import admin

from resources.models import Cluster, DataNode, Flavor, Location, Partition, StorageTier


class PartitionInline(admin.TabularInline):
    model = Partition
    extra = 0


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["name", "batch_system"]
    inlines = [PartitionInline]


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    list_display = ["name", "cluster"]


@admin.register(StorageTier)
class StorageTierAdmin(admin.ModelAdmin):
    list_display = ["name", "rank", "mount_point"]


@admin.register(DataNode)
class DataNodeAdmin(admin.ModelAdmin):
    list_display = ["name", "location", "cores", "memory_mib", "storage_gib", "enabled"]
    list_filter = ["location", "enabled"]


@admin.register(Flavor)
class FlavorAdmin(admin.ModelAdmin):
    list_display = ["name", "cores", "memory_mib", "storage_gib"]
    filter_horizontal = ["locations"]
