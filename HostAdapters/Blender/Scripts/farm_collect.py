# Run by the FarmPlugins Blender adapter on the workstation:
#   blender -b --factory-startup scene.blend --python-exit-code 1 --python farm_collect.py -- out.json
# Writes every external file the scene uses (images, libraries, sounds, clips, caches, fonts, volumes) as JSON.
import json
import os
import sys

import bpy

out = sys.argv[sys.argv.index("--") + 1]
items = []


def add(kind, datablock, written):
    if not written:
        return
    library = getattr(datablock, "library", None)
    full = os.path.normpath(bpy.path.abspath(written, library=library))
    items.append({
        "kind": kind,
        "name": datablock.name,
        "written": written,
        "path": full,
        "library": library.name if library else None,
    })


for image in bpy.data.images:
    if image.packed_file or image.source not in {"FILE", "SEQUENCE", "MOVIE", "TILED"}:
        continue
    if image.source == "TILED" and "<UDIM>" in image.filepath:
        for tile in image.tiles:
            add("image", image, image.filepath.replace("<UDIM>", str(tile.number)))
        continue
    add("image", image, image.filepath)

for library in bpy.data.libraries:
    add("library", library, library.filepath)
for sound in bpy.data.sounds:
    if not sound.packed_file:
        add("sound", sound, sound.filepath)
for clip in bpy.data.movieclips:
    add("movieclip", clip, clip.filepath)
for cache in bpy.data.cache_files:
    add("cache", cache, cache.filepath)
for font in bpy.data.fonts:
    if not font.packed_file and font.filepath != "<builtin>":
        add("font", font, font.filepath)
for volume in bpy.data.volumes:
    if not volume.packed_file:
        add("volume", volume, volume.filepath)

scene = bpy.context.scene
render = scene.render
result = {
    "blend": bpy.data.filepath,
    "scene": scene.name,
    "engine": render.engine,
    "resolution": [render.resolution_x, render.resolution_y, render.resolution_percentage],
    "frameStart": scene.frame_start,
    "frameEnd": scene.frame_end,
    "frameCurrent": scene.frame_current,
    "items": items,
}
with open(out, "w", encoding="utf-8") as handle:
    json.dump(result, handle)
