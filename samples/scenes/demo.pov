// FarmPlugins demo: six spheres dance around a chrome torus while the camera orbits.
// 24 frames (render with +KFI1 +KFF24, or `farm render demo.pov --frames 1-24`); clock runs 0..1.
#version 3.7;
global_settings { assumed_gamma 1.0 max_trace_level 4 }
#include "colors.inc"
#include "demo_materials.inc"

#declare T = clock * 2 * pi;

camera {
    location <6.5 * sin(T * 0.25 + 0.6), 2.4, -6.5 * cos(T * 0.25 + 0.6)>
    look_at <0, 1.0, 0>
    angle 48
}

light_source { <5, 9, -6> color rgb 1.0 }
light_source { <-6, 4, -2> color rgb <0.35, 0.40, 0.55> shadowless }

sky_sphere {
    pigment { gradient y color_map { [0.0 rgb <0.98, 0.74, 0.52>] [0.35 rgb <0.42, 0.58, 0.88>] [1.0 rgb <0.10, 0.16, 0.38>] } }
}

plane { y, 0 texture { Floor } }

torus {
    1.1, 0.18
    rotate x * 90 rotate y * (clock * 360)
    translate y * 1.3
    pigment { color rgb <0.85, 0.86, 0.9> }
    finish { ambient 0 diffuse 0.2 specular 0.9 roughness 0.005 reflection { 0.65 } metallic }
}

#for (I, 0, 5)
    #declare A = T + I * pi / 3;
    #declare H = 0.35 + 0.5 * abs(sin(T * 2 + I));
    sphere {
        <2.0 * cos(A), H, 2.0 * sin(A)>, 0.35
        pigment { color Palette[I] }
        finish { Glossy }
    }
#end
