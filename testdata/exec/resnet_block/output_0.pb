
BlogitsJPUџWјиmE> ч>A≤е/At~ШЅь6оЅ≥=Aa÷жј?м%¬Ј6Aц-ј≤lu?hртAН§ЛAlrЅЄ¬ё≠AAтўј$з¬ЩtKA