# Run by every FarmPlugins Blender task before it renders:
#   blender -b --python-exit-code 1 --python-expr "<exec this file from os.getcwd()>" -o ... -f N -- ARGS
# Opens the scene from the real working folder (Blender resolves relative command-line paths against $PWD, which a
# farm's process launcher may leave pointing elsewhere), points moved dependencies at their staged copies and
# applies the render settings:
#   --farm-scene FILE.blend            the scene, relative to the job folder
#   --farm-size WxH                    resolution at 100 %
#   --farm-border MINX,MAXX,MINY,MAXY  border render cropped to the tile (fractions, y from the bottom), dither off
import json
import os
import sys

import bpy

REMAP = json.loads(r'''__REMAP__''')

args = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
options = dict(zip(args[::2], args[1::2]))
bpy.ops.wm.open_mainfile(filepath=os.path.join(os.getcwd(), options["--farm-scene"]))

collections = {
    "library": bpy.data.libraries,
    "image": bpy.data.images,
    "sound": bpy.data.sounds,
    "movieclip": bpy.data.movieclips,
    "cache": bpy.data.cache_files,
    "font": bpy.data.fonts,
    "volume": bpy.data.volumes,
}
for kind, moves in REMAP.items():
    for name, path in moves.items():
        datablock = collections[kind].get(name)
        if datablock is None:
            raise RuntimeError("farm_setup: no %s named %r to remap" % (kind, name))
        datablock.filepath = path
        if kind == "library":
            datablock.reload()
        elif kind == "image":
            datablock.reload()

scene = bpy.context.scene
render = scene.render
if "--farm-size" in options:
    width, height = (int(v) for v in options["--farm-size"].split("x"))
    render.resolution_x = width
    render.resolution_y = height
    render.resolution_percentage = 100
if "--farm-border" in options:
    min_x, max_x, min_y, max_y = (float(v) for v in options["--farm-border"].split(","))
    render.use_border = True
    render.use_crop_to_border = True
    render.border_min_x = min_x
    render.border_max_x = max_x
    render.border_min_y = min_y
    render.border_max_y = max_y
    # Dithering is noise per image: tiles only reassemble exactly without it.
    render.dither_intensity = 0.0
render.image_settings.file_format = "PNG"
